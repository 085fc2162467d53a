use http::{HeaderMap, HeaderName, HeaderValue};

use super::RequestId;

/// The W3C Trace Context request header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace id (32 lowercase hex digits) of a valid W3C `traceparent` value, or `None`.
///
/// Valid means, as W3C Trace Context level 1 §3.2 says: a 2-digit lowercase hex version other
/// than `ff`; for version `00` exactly `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`
/// (55 characters); for a later version at least those 55 characters, followed by nothing or by
/// `-`; lowercase hex only; neither the trace id nor the parent id all zeros.
///
/// ```
/// use battlement::request_id::traceparent_trace_id;
///
/// let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// assert_eq!(traceparent_trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
/// assert_eq!(traceparent_trace_id(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
/// ```
pub fn traceparent_trace_id(value: &[u8]) -> Option<&str> {
    if value.len() < 55 {
        return None;
    }
    let version = &value[0..2];
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = &value[3..35];
    let parent_id = &value[36..52];
    let flags = &value[53..55];
    if !is_lower_hex(trace_id) || !is_lower_hex(parent_id) || !is_lower_hex(flags) {
        return None;
    }
    if trace_id.iter().all(|&b| b == b'0') || parent_id.iter().all(|&b| b == b'0') {
        return None;
    }
    if version == b"00" {
        if value.len() != 55 {
            return None;
        }
    } else if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    // Lowercase hex digits are ASCII.
    std::str::from_utf8(trace_id).ok()
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The request id taken from the one `traceparent` header of `headers`, if valid.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<RequestId> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Several `traceparent` headers: ambiguous, ignored.
        return None;
    }
    let trace_id = traceparent_trace_id(value.as_bytes())?;
    HeaderValue::from_str(trace_id)
        .ok()
        .map(RequestId::from_validated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_valid() {
        assert_eq!(
            traceparent_trace_id(OK.as_bytes()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may carry more fields after a dash.
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(traceparent_trace_id(v.as_bytes()).is_some());
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09";
        assert!(traceparent_trace_id(v.as_bytes()).is_some());
    }

    #[test]
    fn refuses_invalid() {
        let cases = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        ];
        for c in cases {
            assert_eq!(traceparent_trace_id(c.as_bytes()), None, "{c:?}");
        }
    }

    #[test]
    fn several_headers_are_ignored() {
        let mut h = HeaderMap::new();
        h.append(&TRACEPARENT, HeaderValue::from_static(OK));
        assert!(from_headers(&h).is_some());
        h.append(&TRACEPARENT, HeaderValue::from_static(OK));
        assert!(from_headers(&h).is_none());
    }

    proptest! {
        #[test]
        fn never_panics_and_only_yields_hex(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(id) = traceparent_trace_id(&bytes) {
                prop_assert_eq!(id.len(), 32);
                prop_assert!(is_lower_hex(id.as_bytes()));
            }
        }

        #[test]
        fn valid_roundtrip(trace in "[0-9a-f]{32}", parent in "[0-9a-f]{16}", flags in "[0-9a-f]{2}") {
            let v = format!("00-{trace}-{parent}-{flags}");
            let ok = trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0');
            prop_assert_eq!(traceparent_trace_id(v.as_bytes()).is_some(), ok);
        }
    }
}
