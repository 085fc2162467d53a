//! A key hasher that gives the same fingerprint on every instance: SipHash-2-4 with a fixed,
//! configurable key and integers fed in little-endian order.

use std::hash::{BuildHasher, Hasher};

/// Builds [`StableHasher`]s from one 128-bit key: the [`KeyHasher`] of the Redis stores.
///
/// Every instance sharing a Redis must use the same key (and a build of the same Rust
/// version: the fingerprint follows the keys' `Hash` impls). Integers are hashed in
/// little-endian order and `usize`/`isize` as 64 bits, so 32- and 64-bit, little- and
/// big-endian instances agree.
///
/// [`KeyHasher`]: crate::rate_limit::RateLimitStore::KeyHasher
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StableKeyHasher {
    k0: u64,
    k1: u64,
}

impl StableKeyHasher {
    /// A hasher keyed with `key`.
    pub const fn new(key: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            lo[i] = key[i];
            hi[i] = key[i + 8];
            i += 1;
        }
        Self {
            k0: u64::from_le_bytes(lo),
            k1: u64::from_le_bytes(hi),
        }
    }
}

impl std::fmt::Debug for StableKeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is not shown: with it, a client could aim for fingerprint collisions.
        f.debug_struct("StableKeyHasher").finish_non_exhaustive()
    }
}

impl BuildHasher for StableKeyHasher {
    type Hasher = StableHasher;

    fn build_hasher(&self) -> StableHasher {
        StableHasher::new(self.k0, self.k1)
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), the streaming form, with platform-independent
/// integer encoding.
#[derive(Clone)]
pub struct StableHasher {
    v: [u64; 4],
    tail: u64,
    ntail: usize,
    length: usize,
}

impl std::fmt::Debug for StableHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableHasher").finish_non_exhaustive()
    }
}

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

impl StableHasher {
    fn new(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    #[inline]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        round(&mut self.v);
        round(&mut self.v);
        self.v[0] ^= m;
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len());
        let mut rest = bytes;
        if self.ntail > 0 {
            let take = (8 - self.ntail).min(rest.len());
            for (i, &b) in rest[..take].iter().enumerate() {
                self.tail |= u64::from(b) << (8 * (self.ntail + i));
            }
            self.ntail += take;
            rest = &rest[take..];
            if self.ntail < 8 {
                return;
            }
            let m = self.tail;
            self.compress(m);
            self.tail = 0;
            self.ntail = 0;
        }
        let mut chunks = rest.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.compress(u64::from_le_bytes(word));
        }
        for (i, &b) in chunks.remainder().iter().enumerate() {
            self.tail |= u64::from(b) << (8 * i);
        }
        self.ntail = chunks.remainder().len();
    }

    fn finish(&self) -> u64 {
        let mut v = self.v;
        let b = ((self.length as u64 & 0xff) << 56) | self.tail;
        v[3] ^= b;
        round(&mut v);
        round(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        round(&mut v);
        round(&mut v);
        round(&mut v);
        round(&mut v);
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    fn write_u8(&mut self, n: u8) {
        self.write(&[n]);
    }
    fn write_u16(&mut self, n: u16) {
        self.write(&n.to_le_bytes());
    }
    fn write_u32(&mut self, n: u32) {
        self.write(&n.to_le_bytes());
    }
    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }
    fn write_u128(&mut self, n: u128) {
        self.write(&n.to_le_bytes());
    }
    fn write_usize(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }
    fn write_i8(&mut self, n: i8) {
        self.write(&n.to_le_bytes());
    }
    fn write_i16(&mut self, n: i16) {
        self.write(&n.to_le_bytes());
    }
    fn write_i32(&mut self, n: i32) {
        self.write(&n.to_le_bytes());
    }
    fn write_i64(&mut self, n: i64) {
        self.write(&n.to_le_bytes());
    }
    fn write_i128(&mut self, n: i128) {
        self.write(&n.to_le_bytes());
    }
    fn write_isize(&mut self, n: isize) {
        self.write(&(n as i64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn key() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    /// The reference vectors of the SipHash paper (key 00..0f, messages 00, 00 01, ...).
    #[test]
    fn reference_vectors() {
        let b = StableKeyHasher::new(key());
        let msg: Vec<u8> = (0..64u8).collect();
        let mut h = b.build_hasher();
        h.write(&msg[..0]);
        assert_eq!(h.finish(), 0x726f_db47_dd0e_0e31);
        let mut h = b.build_hasher();
        h.write(&msg[..15]);
        assert_eq!(h.finish(), 0xa129_ca61_49be_45e5);
        let mut h = b.build_hasher();
        h.write(&msg[..8]);
        assert_eq!(h.finish(), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn split_writes_equal_one_write() {
        let b = StableKeyHasher::new(key());
        let msg: Vec<u8> = (0..40u8).collect();
        let whole = b.hash_one(&msg[..]);
        for cut in 0..msg.len() {
            for cut2 in cut..msg.len() {
                let mut h = b.build_hasher();
                (msg.len() as u64).hash(&mut h);
                h.write(&msg[..cut]);
                h.write(&msg[cut..cut2]);
                h.write(&msg[cut2..]);
                assert_eq!(h.finish(), whole, "{cut} {cut2}");
            }
        }
    }

    #[test]
    fn keyed_and_deterministic() {
        let a = StableKeyHasher::new(key());
        let b = StableKeyHasher::new([7; 16]);
        let ip: std::net::IpAddr = [203, 0, 113, 7].into();
        assert_eq!(a.hash_one(ip), StableKeyHasher::new(key()).hash_one(ip));
        assert_ne!(a.hash_one(ip), b.hash_one(ip));
        assert!(format!("{a:?}").contains("StableKeyHasher"));
    }
}
