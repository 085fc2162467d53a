use std::{error::Error, fmt, str::FromStr};

use http::HeaderValue;

/// The id of the current request.
///
/// The request-id layer puts one in the request extensions of every request it forwards, and
/// the other layers of this crate copy it into their rejection bodies. Handlers read it with
/// `req.extensions().get::<RequestId>()` (or axum's `Extension<RequestId>`), or from anywhere
/// in the request's task with [`RequestId::current`].
///
/// A `RequestId` only ever holds 1 to 128 visible ASCII characters, so it is always safe to log
/// and to put in a header. Cloning it is cheap (a reference-count bump at most).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Wraps a header value that was already validated by the caller.
    pub(crate) fn from_validated(value: HeaderValue) -> Self {
        Self(value)
    }

    /// Makes an id from a header value, checking that it is 1 to [`MAX_LEN`](Self::MAX_LEN)
    /// visible ASCII characters (`!` to `~`).
    ///
    /// This is the only rule every `RequestId` obeys; the request-id layer applies a stricter
    /// one to the ids clients send (see `DefaultValidateRequestId`).
    ///
    /// # Errors
    ///
    /// [`InvalidRequestId`] when the value is empty, too long or has another byte.
    pub fn new(value: HeaderValue) -> Result<Self, InvalidRequestId> {
        if is_well_formed(value.as_bytes()) {
            Ok(Self(value))
        } else {
            Err(InvalidRequestId { len: value.len() })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        // The constructors only admit visible ASCII, so this never falls back.
        self.0.to_str().unwrap_or("")
    }

    /// The id as a header value (cheap to clone).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// Consumes the id, returning its header value.
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

/// Whether `bytes` is 1 to [`RequestId::MAX_LEN`] visible ASCII characters.
pub(crate) fn is_well_formed(bytes: &[u8]) -> bool {
    // Branch-free over the bytes so that it vectorizes: `!` (0x21) to `~` (0x7e).
    !bytes.is_empty()
        && bytes.len() <= RequestId::MAX_LEN
        && bytes
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e))
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_well_formed(s.as_bytes()) {
            HeaderValue::from_str(s)
                .map(Self)
                .map_err(|_| InvalidRequestId { len: s.len() })
        } else {
            Err(InvalidRequestId { len: s.len() })
        }
    }
}

impl TryFrom<HeaderValue> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: HeaderValue) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<RequestId> for HeaderValue {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value was refused as a [`RequestId`]: empty, longer than [`RequestId::MAX_LEN`] or not
/// visible ASCII.
///
/// Neither `Debug` nor `Display` shows the value (it came from outside); only its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidRequestId {
    len: usize,
}

impl InvalidRequestId {
    /// The length in bytes of the refused value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the refused value was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for InvalidRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid request id ({} bytes): expected 1 to {} visible ASCII characters",
            self.len,
            RequestId::MAX_LEN
        )
    }
}

impl Error for InvalidRequestId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_invariant() {
        assert!("abc-123".parse::<RequestId>().is_ok());
        assert_eq!("".parse::<RequestId>().unwrap_err().len(), 0);
        assert!("a b".parse::<RequestId>().is_err());
        assert!("é".parse::<RequestId>().is_err());
        assert!("x".repeat(128).parse::<RequestId>().is_ok());
        assert_eq!("x".repeat(129).parse::<RequestId>().unwrap_err().len(), 129);
        let obs = HeaderValue::from_bytes(b"ab\x80").unwrap();
        assert!(RequestId::new(obs).is_err());
        let id: RequestId = "~!".parse().unwrap();
        assert_eq!(id.to_string(), "~!");
        assert_eq!(format!("{id:?}"), "RequestId(\"~!\")");
    }
}
