//! Per-request CSP nonces from the OS CSPRNG, amortised through a thread-local buffer.

use std::{cell::RefCell, fmt};

use base64::{Engine, engine::general_purpose::STANDARD};

/// Random bytes per nonce: 128 bits, as CSP3 asks ("at least 128 bits of entropy").
const NONCE_BYTES: usize = 16;
/// Length of a nonce in padded base64.
pub(crate) const NONCE_LEN: usize = 24;
/// Nonces fetched from the OS per `getrandom` call.
const BATCH: usize = 32;

struct Pool {
    buf: [u8; NONCE_BYTES * BATCH],
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { buf: [0; NONCE_BYTES * BATCH], next: NONCE_BYTES * BATCH })
    };
}

fn fresh_bytes() -> [u8; NONCE_BYTES] {
    POOL.with_borrow_mut(|pool| {
        if pool.next == pool.buf.len() {
            if getrandom::fill(&mut pool.buf).is_err() {
                // The OS refused (should not happen after boot): fall back to rand's thread
                // RNG, a ChaCha CSPRNG seeded and periodically reseeded from the OS.
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut pool.buf);
            }
            pool.next = 0;
        }
        let mut out = [0; NONCE_BYTES];
        let used = &mut pool.buf[pool.next..pool.next + NONCE_BYTES];
        out.copy_from_slice(used);
        // Never hand out the same bytes twice, even if the pool is read again by mistake.
        used.fill(0);
        pool.next += NONCE_BYTES;
        out
    })
}

/// The CSP nonce of the current request: 128 bits from the OS CSPRNG, base64-encoded.
///
/// The security-headers layer puts one in the request extensions when the policy was built
/// [`with_nonce`](super::ContentSecurityPolicy::with_nonce); the response's CSP header carries
/// the same value as `'nonce-…'`. Put it in the `nonce` attribute of your inline `<script>` (or
/// `<style>`) tags:
///
/// ```
/// # use battlement::security_headers::CspNonce;
/// fn page(nonce: &CspNonce) -> String {
///     format!(r#"<script nonce="{}">boot()</script>"#, nonce.as_str())
/// }
/// ```
///
/// With axum, take it as `Extension<CspNonce>`. It is `Copy` and 24 bytes long.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CspNonce {
    b64: [u8; NONCE_LEN],
}

impl CspNonce {
    /// A fresh nonce from the OS CSPRNG (read in batches through a thread-local buffer, so most
    /// calls make no system call).
    pub fn generate() -> Self {
        let mut b64 = [0; NONCE_LEN];
        // Cannot fail: 16 bytes are exactly 24 base64 characters with padding.
        let written = STANDARD
            .encode_slice(fresh_bytes(), &mut b64)
            .expect("16 bytes fit 24 base64 characters");
        debug_assert_eq!(written, NONCE_LEN);
        Self { b64 }
    }

    /// The nonce in base64, as it appears in the header (without `'nonce-` and `'`).
    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII, so this never falls back.
        std::str::from_utf8(&self.b64).unwrap_or("")
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.b64
    }
}

impl fmt::Debug for CspNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret: it is sent in the response header anyway.
        f.debug_tuple("CspNonce").field(&self.as_str()).finish()
    }
}

impl fmt::Display for CspNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn nonces_are_fresh_base64() {
        let mut seen = HashSet::new();
        for _ in 0..(BATCH * 3 + 5) {
            let n = CspNonce::generate();
            let raw = STANDARD.decode(n.as_str()).unwrap();
            assert_eq!(raw.len(), NONCE_BYTES);
            assert_ne!(raw, [0; NONCE_BYTES]);
            assert!(seen.insert(n), "repeated nonce");
        }
    }

    #[test]
    fn threads_get_their_own() {
        let a = std::thread::spawn(CspNonce::generate).join().unwrap();
        let b = std::thread::spawn(CspNonce::generate).join().unwrap();
        assert_ne!(a, b);
    }
}
