use std::fmt;

use http::HeaderValue;

/// The id of the current request.
///
/// The request-id layer puts one in the request extensions of every request it forwards, and
/// the other layers of this crate copy it into their rejection bodies. Handlers read it with
/// `req.extensions().get::<RequestId>()` (or axum's `Extension<RequestId>`).
///
/// A `RequestId` only ever holds 1 to 128 visible ASCII characters, so it is always safe to log
/// and to put in a header. Cloning it is cheap (a reference-count bump at most).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Wraps a header value that was already validated by the caller.
    pub(crate) fn from_validated(value: HeaderValue) -> Self {
        Self(value)
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
