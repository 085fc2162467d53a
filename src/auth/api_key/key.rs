//! Key hashes, hashing and key generation.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::error::ConfigError;

/// The longest API key accepted, in bytes. Longer keys are rejected before they are hashed.
pub const MAX_KEY_LEN: usize = 256;

/// The longest prefix [`generate_key`] accepts, in bytes.
pub const MAX_PREFIX_LEN: usize = 32;

/// The number of random bytes in a key made by [`generate_key`] (256 bits).
pub const KEY_RANDOM_BYTES: usize = 32;

/// The SHA-256 hash of an API key: what the server stores instead of the key.
///
/// `Debug` and [`KeyHash::short`] show only the first 4 bytes (8 hex digits), enough to tell
/// keys apart in an audit log without handing out the whole hash (which would let anyone who
/// reads the log test guesses of a weak key offline). Equality is constant time.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Wraps a raw SHA-256 digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (either case; surrounding whitespace is ignored).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `key_hash`) when the input is not exactly 64 hex digits. The
    /// error never repeats the input.
    pub fn from_hex(hex: &str) -> Result<Self, ConfigError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(ConfigError::invalid(
                "key_hash",
                "a key hash is 64 hex digits (SHA-256)",
            ));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => *byte = (hi << 4) | lo,
                _ => {
                    return Err(ConfigError::invalid(
                        "key_hash",
                        "a key hash may only contain hex digits",
                    ));
                }
            }
        }
        Ok(Self(out))
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lowercase hex digits (what the configuration holds).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &self.0);
        out
    }

    /// The first 4 bytes as 8 lowercase hex digits: safe to log, enough to correlate.
    pub fn short(&self) -> String {
        let mut out = String::with_capacity(8);
        push_hex(&mut out, &self.0[..4]);
        out
    }
}

impl ConstantTimeEq for KeyHash {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

/// Hashes an API key with SHA-256: the value to store in the configuration (as
/// [`KeyHash::to_hex`]) instead of the key.
///
/// The key is hashed exactly as the client sends it (its bytes, no trimming or case folding).
pub fn hash_key(key: &str) -> KeyHash {
    hash_key_bytes(key.as_bytes())
}

pub(crate) fn hash_key_bytes(key: &[u8]) -> KeyHash {
    KeyHash(Sha256::digest(key).into())
}

/// A key made by [`generate_key`]: give [`GeneratedKey::key`] to the client once, store
/// [`GeneratedKey::hash_hex`].
///
/// `Debug` shows the prefix and the short hash only, never the key.
#[derive(Clone)]
pub struct GeneratedKey {
    key: String,
    prefix_len: usize,
    hash: KeyHash,
}

impl GeneratedKey {
    /// The key itself. Show it to its owner once; never log it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The hash of the key.
    pub fn hash(&self) -> KeyHash {
        self.hash
    }

    /// The hash of the key as 64 hex digits, for the configuration.
    pub fn hash_hex(&self) -> String {
        self.hash.to_hex()
    }

    /// The key and the hex of its hash, `(key, hash_hex)`.
    pub fn into_parts(self) -> (String, String) {
        let hex = self.hash.to_hex();
        (self.key, hex)
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &&self.key[..self.prefix_len])
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Makes a new API key: `prefix` followed by 32 bytes from the operating system's CSPRNG in
/// unpadded base64url (43 characters), with its hash. Prints nothing.
///
/// A recognizable prefix such as `bk_live_` lets secret scanners and people spot a leaked key
/// and tell which environment it belongs to.
///
/// ```
/// use battlement::auth::api_key::{generate_key, hash_key};
///
/// let generated = generate_key("bk_live_").unwrap();
/// assert!(generated.key().starts_with("bk_live_"));
/// assert_eq!(hash_key(generated.key()), generated.hash());
/// let (key, hash_hex) = generated.into_parts();
/// assert_eq!(key.len(), 8 + 43);
/// assert_eq!(hash_hex.len(), 64);
/// ```
///
/// # Errors
///
/// A [`ConfigError`] (field `prefix`) when the prefix is longer than [`MAX_PREFIX_LEN`] or has
/// characters other than ASCII letters, digits, `_` and `-`; and (field `os_rng`) in the
/// unlikely case that the operating system cannot provide random bytes.
pub fn generate_key(prefix: &str) -> Result<GeneratedKey, ConfigError> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(ConfigError::out_of_range(
            "prefix",
            "a key prefix is at most 32 characters",
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::invalid(
            "prefix",
            "a key prefix may only contain ASCII letters, digits, `_` and `-`",
        ));
    }
    let mut random = zeroize::Zeroizing::new([0u8; KEY_RANDOM_BYTES]);
    getrandom::fill(random.as_mut()).map_err(|_| {
        ConfigError::new(
            crate::error::ConfigErrorKind::Missing,
            "os_rng",
            "the operating system's random number generator failed",
        )
    })?;
    let mut key = String::with_capacity(prefix.len() + 43);
    key.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(random.as_ref(), &mut key);
    let hash = hash_key(&key);
    Ok(GeneratedKey {
        key,
        prefix_len: prefix.len(),
        hash,
    })
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let h = hash_key("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.short(), "ba7816bf");
        assert_eq!(KeyHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert_ne!(hash_key("abd"), h);
    }

    #[test]
    fn from_hex_rejects_bad_input() {
        assert!(KeyHash::from_hex("").is_err());
        assert!(KeyHash::from_hex(&"a".repeat(63)).is_err());
        assert!(KeyHash::from_hex(&"a".repeat(65)).is_err());
        let err = KeyHash::from_hex(&format!("{}zz", "a".repeat(62))).unwrap_err();
        assert_eq!(err.field(), "key_hash");
        assert!(!err.to_string().contains("zz"));
        // Multi-byte characters that make up 64 bytes are not hex.
        assert!(KeyHash::from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let h = hash_key("abc");
        let dbg = format!("{h:?}");
        assert!(dbg.contains("ba7816bf"));
        assert!(!dbg.contains(&h.to_hex()));
        let g = generate_key("bk_test_").unwrap();
        let dbg = format!("{g:?}");
        assert!(dbg.contains("bk_test_"));
        assert!(!dbg.contains(g.key()));
        assert!(!dbg.contains(&g.hash_hex()));
    }

    #[test]
    fn generate_validates_the_prefix() {
        assert!(generate_key("").is_ok());
        assert!(generate_key("bk-live_9").is_ok());
        assert_eq!(generate_key("bk live").unwrap_err().field(), "prefix");
        assert!(generate_key("bk.live").is_err());
        assert!(generate_key("bk_é").is_err());
        assert!(generate_key(&"a".repeat(33)).is_err());
        assert!(generate_key(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn generated_keys_are_tokens() {
        let g = generate_key("bk_live_").unwrap();
        let body = &g.key()["bk_live_".len()..];
        assert_eq!(body.len(), 43);
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
    }
}
