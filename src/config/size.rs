//! Byte sizes: `1MiB`, `512KiB`, `10MB`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::error::ConfigError;

/// A number of bytes written for humans: `1MiB`, `512KiB`, `10MB`, `64B`, or a bare integer.
///
/// Binary units (`KiB`, `MiB`, `GiB`) are powers of 1024, decimal ones (`kB`/`KB`, `MB`,
/// `GB`) powers of 1000. Serializes back with the largest exact binary unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` bytes.
    pub const fn b(n: u64) -> Self {
        Self(n)
    }

    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// The number of bytes.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ConfigError;

    /// # Errors
    ///
    /// A [`ConfigError`] (empty field) for an empty text, an unknown unit or an overflow.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::invalid(
                "",
                "expected a size such as `1MiB`, `512KiB`, `10MB` or a number of bytes",
            )
        };
        let s = s.trim();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 20 {
            return Err(invalid());
        }
        let n: u64 = s[..digits].parse().map_err(|_| invalid())?;
        let factor: u64 = match s[digits..].trim_start() {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(invalid()),
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| ConfigError::out_of_range("", "the size is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n != 0 && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1MiB\", \"512KiB\", \"10MB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(|e: ConfigError| E::custom(e.reason()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(ByteSize::get);
        assert_eq!(p("1MiB").unwrap(), 1 << 20);
        assert_eq!(p("512KiB").unwrap(), 512 * 1024);
        assert_eq!(p("10MB").unwrap(), 10_000_000);
        assert_eq!(p("64B").unwrap(), 64);
        assert_eq!(p("1024").unwrap(), 1024);
        assert_eq!(p("2 GiB").unwrap(), 2 << 30);
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "1mib",
            "-1",
            "1TiB",
            "99999999999999999999GiB",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_numbers_are_bytes() {
        #[derive(Debug, Deserialize)]
        struct T {
            s: ByteSize,
        }
        assert_eq!(toml::from_str::<T>("s = 4096").unwrap().s.get(), 4096);
        assert_eq!(toml::from_str::<T>("s = \"1KiB\"").unwrap().s.get(), 1024);
        assert!(toml::from_str::<T>("s = -1").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(n in any::<u64>()) {
            prop_assert_eq!(ByteSize(n).to_string().parse::<ByteSize>().unwrap(), ByteSize(n));
        }
    }
}
