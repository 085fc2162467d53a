use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request};
use rand::RngCore;

use super::RequestId;

/// Makes the id of a request that arrived without an acceptable one.
///
/// Implemented by [`DefaultMakeRequestId`] (UUID v7) and by every `Fn() -> RequestId` closure:
///
/// ```
/// use battlement::request_id::{RequestId, SetRequestIdLayer};
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
///
/// let next = Arc::new(AtomicU64::new(1));
/// let layer = SetRequestIdLayer::new().with_make_request_id(move || {
///     let n = next.fetch_add(1, Ordering::Relaxed);
///     // Visible ASCII, 1 to 128 characters: cannot fail.
///     format!("req-{n}").parse::<RequestId>().expect("valid id")
/// });
/// # let _ = layer;
/// ```
pub trait MakeRequestId {
    /// Makes an id for `request`.
    fn make_request_id<B>(&self, request: &Request<B>) -> RequestId;
}

impl<F> MakeRequestId for F
where
    F: Fn() -> RequestId,
{
    fn make_request_id<B>(&self, _request: &Request<B>) -> RequestId {
        self()
    }
}

/// Makes UUID v7 ids (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random bits from
/// the thread-local CSPRNG (`rand::rng()`, ChaCha12 seeded from the OS).
///
/// No lock and no system call per id: the clock is read through the vDSO, the random bits
/// come from a per-thread buffer (reseeded from the OS every 64 KiB of output), and the text is
/// carved out of a per-thread buffer shared by 32 ids (so one allocation per 32 ids, and clones
/// of the id are reference-count bumps). Ids sort by creation time (to the millisecond); within a
/// millisecond their order is random.
///
/// An id kept for long keeps its 1 KiB buffer alive: store `id.as_str().to_owned()` rather
/// than the id in long-lived structures.
///
/// The timestamp is readable by whoever sees the id: it tells when the request arrived, which
/// the response's `Date` header tells anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultMakeRequestId;

impl DefaultMakeRequestId {
    /// The UUID v7 generator.
    pub const fn new() -> Self {
        Self
    }

    /// A fresh UUID v7 id.
    pub fn generate() -> RequestId {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Two word reads from the block buffer are cheaper than `fill_bytes`.
        let mut rng = rand::rng();
        let (high, low) = (rng.next_u64().to_le_bytes(), rng.next_u32().to_le_bytes());
        let random = [
            high[0], high[1], high[2], high[3], high[4], high[5], high[6], high[7], low[0], low[1],
        ];
        uuid_v7(millis, random)
    }
}

impl MakeRequestId for DefaultMakeRequestId {
    fn make_request_id<B>(&self, _request: &Request<B>) -> RequestId {
        Self::generate()
    }
}

/// The UUID v7 made of `unix_millis` (its low 48 bits) and `random` (74 of its 80 bits; the
/// others are the version and the variant), in the lowercase hyphenated form.
///
/// For tests and for generators with their own clock or randomness.
pub fn uuid_v7(unix_millis: u64, random: [u8; 10]) -> RequestId {
    let uuid = uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut buf);
    RequestId::from_validated(header_value(text.as_bytes()))
}

/// A header value holding `text` (a 36-byte UUID), carved out of a per-thread buffer shared
/// with other ids (see `header_buf`): no allocation of its own, and clones are a
/// reference-count bump.
fn header_value(text: &[u8]) -> HeaderValue {
    // Lowercase hex and dashes, 36 bytes: always a valid header value (and request id).
    crate::header_buf::header_value(text.len(), |w| w.push(text))
        .unwrap_or_else(|| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_uuid_v7() {
        let id = DefaultMakeRequestId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(id.as_str(), id.as_str().to_ascii_lowercase());
    }

    #[test]
    fn timestamp_first() {
        let a = uuid_v7(0x0123_4567_89ab, [0xff; 10]);
        assert!(a.as_str().starts_with("01234567-89ab-7fff-bfff-"));
        let b = uuid_v7(0x0123_4567_89ac, [0; 10]);
        assert!(a.as_str() < b.as_str());
    }

    proptest::proptest! {
        #[test]
        fn formats_like_the_uuid_crate(millis in 0u64..(1 << 48), random in proptest::prelude::any::<[u8; 10]>()) {
            let ours = uuid_v7(millis, random);
            let theirs = uuid::Builder::from_unix_timestamp_millis(millis, &random)
                .into_uuid()
                .hyphenated()
                .to_string();
            proptest::prop_assert_eq!(ours.as_str(), theirs.as_str());
        }
    }

    #[test]
    fn closure_impl() {
        let make = || "fixed".parse::<RequestId>().unwrap();
        let req = Request::new(());
        assert_eq!(make.make_request_id(&req).as_str(), "fixed");
    }
}
