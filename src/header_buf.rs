//! Short header values made per request without an allocation each.
//!
//! A request id or a `RateLimit` value is a few dozen bytes. Each one is written into a
//! thread-local buffer and split off as a shared [`Bytes`](bytes::Bytes): one allocation per
//! [`CHUNK`] bytes instead of one (plus a free) per value, and no 512-byte stack buffer
//! to clear first.

use std::cell::RefCell;

use bytes::{BufMut, BytesMut};
use http::HeaderValue;

/// Bytes per thread-local chunk: about 30 request ids or `RateLimit` values. The values cut
/// from one chunk keep all of it alive, so it stays small.
const CHUNK: usize = 1024;

thread_local! {
    static BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Writes a value of at most `max` bytes with `write` and returns it as a header value, or
/// `None` when `write` wrote a byte that a header value cannot hold (or more than `max`).
///
/// `write` gets a buffer with at least `max` bytes free, so a value is never split across
/// chunks.
pub(crate) fn header_value(max: usize, write: impl FnOnce(&mut Writer<'_>)) -> Option<HeaderValue> {
    let mut write = Some(write);
    let mut fill = |buf: &mut BytesMut| {
        // Left over only if an earlier `write` panicked: never shared, drop it.
        buf.clear();
        if buf.capacity() < max {
            *buf = BytesMut::with_capacity(CHUNK.max(max));
        }
        let mut writer = Writer {
            buf,
            max,
            overflow: false,
        };
        if let Some(write) = write.take() {
            write(&mut writer);
        }
        let overflow = writer.overflow;
        let bytes = buf.split().freeze();
        (!overflow).then_some(bytes)
    };
    let bytes = match BUF.try_with(|buf| fill(&mut buf.borrow_mut())) {
        Ok(bytes) => bytes,
        // The thread is being torn down: a buffer of its own.
        Err(_) => fill(&mut BytesMut::new()),
    }?;
    HeaderValue::from_maybe_shared(bytes).ok()
}

/// Where [`header_value`] writes: bytes and decimal numbers.
pub(crate) struct Writer<'a> {
    buf: &'a mut BytesMut,
    max: usize,
    overflow: bool,
}

impl Writer<'_> {
    /// Appends `s`; a value that would grow past its `max` bytes is refused.
    #[inline]
    pub(crate) fn push(&mut self, s: &[u8]) {
        if self.buf.len() + s.len() <= self.max {
            self.buf.put_slice(s);
        } else {
            self.overflow = true;
        }
    }

    /// Appends `n` in decimal.
    pub(crate) fn push_u64(&mut self, mut n: u64) {
        const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            i -= 2;
            digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            i -= 1;
            digits[i] = b'0' + n as u8;
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for n in [
            0,
            7,
            9,
            10,
            42,
            99,
            100,
            101,
            999,
            1000,
            1234567890,
            u64::MAX,
        ] {
            let v = header_value(32, |w| {
                w.push(b"x");
                w.push_u64(n);
            })
            .unwrap();
            assert_eq!(v.as_bytes(), format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn values_are_independent() {
        let a = header_value(8, |w| w.push(b"abc")).unwrap();
        let b = header_value(8, |w| w.push(b"defgh")).unwrap();
        assert_eq!((a.as_bytes(), b.as_bytes()), (&b"abc"[..], &b"defgh"[..]));
        // Many values: the chunk is replaced when full, earlier values stay intact.
        let all: Vec<_> = (0..2000u64)
            .map(|i| header_value(24, |w| w.push_u64(i)).unwrap())
            .collect();
        for (i, v) in all.iter().enumerate() {
            assert_eq!(v.as_bytes(), i.to_string().as_bytes());
        }
    }

    #[test]
    fn refuses_too_long_or_invalid() {
        assert!(header_value(4, |w| w.push(b"12345")).is_none());
        assert!(
            header_value(4, |w| {
                w.push(b"12");
                w.push(b"345");
            })
            .is_none()
        );
        assert!(header_value(4, |w| w.push(b"1234")).is_some());
        assert!(header_value(8, |w| w.push(b"a\nb")).is_none());
        // A refused value leaves nothing behind for the next one.
        assert_eq!(header_value(8, |w| w.push(b"ok")).unwrap(), "ok");
    }
}
