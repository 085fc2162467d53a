use std::fmt;

use crate::error::ConfigError;

use super::RequestId;

/// Decides whether an id sent by the client is kept.
///
/// The layer only asks about values that are already 1 to [`RequestId::MAX_LEN`] visible ASCII
/// characters (the rule every [`RequestId`] obeys), so a validator can only be stricter.
/// Implemented by [`DefaultValidateRequestId`] and by every `Fn(&str) -> bool` closure:
///
/// ```
/// use battlement::request_id::SetRequestIdLayer;
///
/// // Only our own edge's ids: `edge-` and 32 hex digits.
/// let layer = SetRequestIdLayer::new().with_validate_request_id(|id: &str| {
///     id.strip_prefix("edge-")
///         .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
/// });
/// # let _ = layer;
/// ```
pub trait ValidateRequestId {
    /// Whether `id` is kept as the request id.
    fn is_valid(&self, id: &str) -> bool;
}

impl<F> ValidateRequestId for F
where
    F: Fn(&str) -> bool,
{
    fn is_valid(&self, id: &str) -> bool {
        self(id)
    }
}

/// Keeps ids of a bounded length made of an allowed set of characters.
///
/// By default 1 to 128 characters of `[A-Za-z0-9._:-]`: enough for UUIDs, ULIDs, W3C trace ids
/// and most load-balancer ids, and nothing that can forge a log line or break out of a JSON
/// string or a quoted log field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DefaultValidateRequestId {
    min_len: u8,
    max_len: u8,
    /// Bit `b` set when ASCII byte `b` is allowed.
    allowed: u128,
    /// The same, as a table indexed by any byte.
    table: [bool; 256],
}

const fn table(allowed: u128) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = allowed & (1u128 << b) != 0;
        b += 1;
    }
    table
}

const fn bit(b: u8) -> u128 {
    1u128 << b
}

const fn range(lo: u8, hi: u8) -> u128 {
    // All bits from `lo` to `hi` inclusive (`hi` < 127).
    ((1u128 << (hi + 1)) - 1) & !((1u128 << lo) - 1)
}

const DEFAULT_CHARSET: u128 = range(b'0', b'9')
    | range(b'A', b'Z')
    | range(b'a', b'z')
    | bit(b'.')
    | bit(b'_')
    | bit(b':')
    | bit(b'-');

impl DefaultValidateRequestId {
    /// 1 to 128 characters of `[A-Za-z0-9._:-]`.
    pub const fn new() -> Self {
        Self {
            min_len: 1,
            max_len: 128,
            allowed: DEFAULT_CHARSET,
            table: table(DEFAULT_CHARSET),
        }
    }

    /// Accepts ids of `min..=max` characters.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] (`out_of_range`) when `min` is 0, `max` is over
    /// [`RequestId::MAX_LEN`] or `min > max`.
    pub fn with_length(mut self, min: usize, max: usize) -> Result<Self, ConfigError> {
        if min == 0 || max > RequestId::MAX_LEN || min > max {
            return Err(ConfigError::out_of_range(
                "request_id.length",
                format!(
                    "expected 1 <= min <= max <= {}, got {min}..={max}",
                    RequestId::MAX_LEN
                ),
            ));
        }
        // Both fit in a u8: max <= 128.
        self.min_len = min as u8;
        self.max_len = max as u8;
        Ok(self)
    }

    /// Accepts exactly the characters of `chars` (for example
    /// `"0123456789abcdef-"`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] (`unsafe_value`) when `chars` is empty or has a character that is not
    /// visible ASCII (space, control characters and non-ASCII can never be part of an id).
    pub fn with_charset(mut self, chars: &str) -> Result<Self, ConfigError> {
        self.allowed = charset(chars, "request_id.charset")?;
        self.table = table(self.allowed);
        Ok(self)
    }

    /// Also accepts the characters of `chars`, on top of the current set.
    ///
    /// # Errors
    ///
    /// As [`with_charset`](Self::with_charset).
    pub fn also_allow(mut self, chars: &str) -> Result<Self, ConfigError> {
        self.allowed |= charset(chars, "request_id.charset")?;
        self.table = table(self.allowed);
        Ok(self)
    }

    /// The accepted length range, in characters.
    pub fn length(&self) -> (usize, usize) {
        (self.min_len.into(), self.max_len.into())
    }

    /// Whether ASCII byte `b` may appear in an accepted id.
    pub fn allows(&self, b: u8) -> bool {
        b < 128 && self.allowed & bit(b) != 0
    }
}

fn charset(chars: &str, field: &'static str) -> Result<u128, ConfigError> {
    if chars.is_empty() {
        return Err(ConfigError::unsafe_value(
            field,
            "the character set is empty",
        ));
    }
    let mut set = 0;
    for b in chars.bytes() {
        if !b.is_ascii_graphic() {
            return Err(ConfigError::unsafe_value(
                field,
                "only visible ASCII characters (`!` to `~`) may be allowed in request ids",
            ));
        }
        set |= bit(b);
    }
    Ok(set)
}

impl Default for DefaultValidateRequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidateRequestId for DefaultValidateRequestId {
    fn is_valid(&self, id: &str) -> bool {
        let len = id.len();
        len >= usize::from(self.min_len)
            && len <= usize::from(self.max_len)
            // Branch-free over the bytes: one table load each.
            && id
                .bytes()
                .fold(true, |ok, b| ok & self.table[usize::from(b)])
    }
}

impl fmt::Debug for DefaultValidateRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: String = (0u8..128)
            .filter(|&b| self.allows(b))
            .map(char::from)
            .collect();
        f.debug_struct("DefaultValidateRequestId")
            .field("min_len", &self.min_len)
            .field("max_len", &self.max_len)
            .field("charset", &chars)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule() {
        let v = DefaultValidateRequestId::new();
        assert!(v.is_valid("0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11"));
        assert!(v.is_valid("a.b_c:d-E9"));
        assert!(v.is_valid(&"x".repeat(128)));
        assert!(!v.is_valid(&"x".repeat(129)));
        assert!(!v.is_valid(""));
        for bad in ["a b", "a/b", "a\"b", "a\\b", "a=b", "é", "a\tb", "{x}"] {
            assert!(!v.is_valid(bad), "{bad:?}");
        }
        let allowed: String = (0u8..128)
            .filter(|&b| v.allows(b))
            .map(char::from)
            .collect();
        assert_eq!(
            allowed,
            "-.0123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn configurable() {
        let v = DefaultValidateRequestId::new()
            .with_length(4, 8)
            .unwrap()
            .with_charset("0123456789abcdef")
            .unwrap();
        assert!(v.is_valid("dead"));
        assert!(!v.is_valid("dea"));
        assert!(!v.is_valid("deadbeef0"));
        assert!(!v.is_valid("DEAD"));
        let v = v.also_allow("/").unwrap();
        assert!(v.is_valid("de/ad"));
        assert_eq!(v.length(), (4, 8));
        assert!(format!("{v:?}").contains("/0123456789abcdef"));
    }

    proptest::proptest! {
        #[test]
        fn matches_the_plain_definition(bytes in proptest::collection::vec(0x20u8..0x7f, 0..140)) {
            let text = String::from_utf8(bytes).unwrap();
            let plain = (1..=128).contains(&text.len())
                && text.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
            proptest::prop_assert_eq!(DefaultValidateRequestId::new().is_valid(&text), plain);
            let well_formed = !text.is_empty() && text.len() <= 128 && !text.contains(' ');
            proptest::prop_assert_eq!(
                crate::request_id::id::is_well_formed(text.as_bytes()),
                well_formed
            );
        }

        #[test]
        fn any_byte(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..140)) {
            let plain = !bytes.is_empty()
                && bytes.len() <= 128
                && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
            proptest::prop_assert_eq!(crate::request_id::id::is_well_formed(&bytes), plain);
        }
    }

    #[test]
    fn refuses_bad_config() {
        let v = DefaultValidateRequestId::new();
        assert!(v.with_length(0, 5).is_err());
        assert!(v.with_length(5, 4).is_err());
        assert_eq!(
            v.with_length(1, 129).unwrap_err().field(),
            "request_id.length"
        );
        assert!(v.with_charset("").is_err());
        assert!(v.with_charset("a b").is_err());
        assert!(v.also_allow("é").is_err());
        assert!(v.also_allow("\n").is_err());
    }
}
