//! Keys and the key ring: key ids, secrets, validity windows and rotation with a grace period.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use base64::Engine as _;
use hmac::{Hmac, KeyInit};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::{SignatureError, SignatureErrorKind};
use crate::error::ConfigError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The shortest secret a [`Key`] accepts, in bytes (the output size of SHA-256).
pub const MIN_SECRET_LEN: usize = 32;

/// The longest secret a [`Key`] accepts, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;

/// How long a key keeps verifying after it was rotated out, unless set otherwise: 7 days.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The most keys a [`KeyRing`] holds (keys past their grace period are dropped on rotation).
pub const MAX_KEYS: usize = 256;

/// A signature algorithm. Each key has exactly one; an `alg` parameter naming another is
/// rejected (RFC 9421 §3.2, §7.3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `hmac-sha256` (RFC 9421 §3.3.3).
    HmacSha256,
}

impl Algorithm {
    /// The registered name, e.g. `"hmac-sha256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signing key: an id, a secret and an optional validity window.
///
/// The secret is turned into a pre-keyed HMAC state at construction (so every signature costs
/// only the message's blocks) and is not kept otherwise; the state is wiped on drop. `Debug`
/// shows the id and the window, never the secret.
#[derive(Clone)]
pub struct Key {
    id: Arc<str>,
    mac: HmacSha256,
    alg: Algorithm,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

impl Key {
    /// An `hmac-sha256` key from raw secret bytes.
    ///
    /// # Errors
    ///
    /// When `id` is empty, longer than 256 bytes or has characters other than visible ASCII
    /// without `"` and `\`, or when the secret is shorter than [`MIN_SECRET_LEN`] or longer
    /// than [`MAX_SECRET_LEN`] bytes.
    pub fn hmac_sha256(id: impl Into<String>, secret: &[u8]) -> Result<Self, ConfigError> {
        let id = id.into();
        validate_key_id(&id).map_err(|reason| ConfigError::invalid("signing.key_id", reason))?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::out_of_range(
                "signing.secret",
                "the secret must be at least 32 bytes",
            ));
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(ConfigError::out_of_range(
                "signing.secret",
                "the secret must be at most 1024 bytes",
            ));
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret).map_err(|_| {
            ConfigError::invalid("signing.secret", "HMAC refused the secret's length")
        })?;
        Ok(Self {
            id: Arc::from(id),
            mac,
            alg: Algorithm::HmacSha256,
            not_before: None,
            not_after: None,
        })
    }

    /// An `hmac-sha256` key whose secret is given in hex (upper or lower case).
    ///
    /// # Errors
    ///
    /// When the text is not hex, or as [`Key::hmac_sha256`].
    pub fn from_hex(id: impl Into<String>, hex: &str) -> Result<Self, ConfigError> {
        let secret = decode_hex(hex.trim())
            .ok_or_else(|| ConfigError::invalid("signing.secret", "not valid hex"))?;
        Self::hmac_sha256(id, &secret)
    }

    /// An `hmac-sha256` key whose secret is given in base64 (standard or URL-safe alphabet,
    /// with or without padding).
    ///
    /// # Errors
    ///
    /// When the text is not base64, or as [`Key::hmac_sha256`].
    pub fn from_base64(id: impl Into<String>, b64: &str) -> Result<Self, ConfigError> {
        let secret = decode_base64(b64.trim())
            .ok_or_else(|| ConfigError::invalid("signing.secret", "not valid base64"))?;
        Self::hmac_sha256(id, &secret)
    }

    /// The key may be used from this Unix time on.
    #[must_use]
    pub const fn not_before(mut self, unix: u64) -> Self {
        self.not_before = Some(unix);
        self
    }

    /// The key may be used until this Unix time (exclusive).
    #[must_use]
    pub const fn not_after(mut self, unix: u64) -> Self {
        self.not_after = Some(unix);
        self
    }

    /// The key id (`keyid` in `Signature-Input`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn shared_id(&self) -> Arc<str> {
        self.id.clone()
    }

    /// The key's algorithm.
    pub const fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Start of the validity window, if any.
    pub const fn valid_from(&self) -> Option<u64> {
        self.not_before
    }

    /// End of the validity window, if any.
    pub const fn valid_until(&self) -> Option<u64> {
        self.not_after
    }

    /// The HMAC-SHA256 of `data` with this key (for a signature base built by
    /// [`signature_base`](super::signature_base), or any custom scheme).
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// A fresh copy of the pre-keyed MAC state.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    fn in_window(&self, now: u64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now < na)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub(crate) fn validate_key_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("the key id is empty");
    }
    if id.len() > 256 {
        return Err("the key id is longer than 256 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err("the key id must be visible ASCII without `\"` or `\\`");
    }
    Ok(())
}

pub(crate) fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.as_bytes().chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

pub(crate) fn decode_base64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
        .map(Zeroizing::new)
}

struct Entry {
    key: Arc<Key>,
    /// When the key stopped being the signing key.
    retired_at: Option<u64>,
}

struct Ring {
    signing: Arc<Key>,
    keys: HashMap<Arc<str>, Entry>,
    grace: u64,
}

/// The keys a signer or verifier knows, by key id, with one current signing key.
///
/// * The signing key signs ([`SignRequestLayer`](super::SignRequestLayer)) and verifies.
/// * [`rotate`](KeyRing::rotate) makes a new key the signing key; the previous one keeps
///   verifying for the grace period ([`DEFAULT_GRACE_PERIOD`], 7 days) and then is refused.
/// * Verify-only keys ([`with_key`](KeyRing::with_key)) verify within their own window.
///
/// Cloning is an `Arc` bump; all clones see a rotation. `Debug` lists key ids only.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Ring>>,
}

impl KeyRing {
    /// A ring whose signing key is `signing`.
    pub fn new(signing: Key) -> Self {
        let signing = Arc::new(signing);
        let mut keys = HashMap::new();
        keys.insert(
            signing.shared_id(),
            Entry {
                key: signing.clone(),
                retired_at: None,
            },
        );
        Self {
            inner: Arc::new(RwLock::new(Ring {
                signing,
                keys,
                grace: DEFAULT_GRACE_PERIOD.as_secs(),
            })),
        }
    }

    /// A ring with one `hmac-sha256` key read from the environment: the key id from the
    /// variable `id_var`, the secret, in hex, from `secret_var`.
    ///
    /// # Errors
    ///
    /// When a variable is unset or not Unicode, or as [`Key::from_hex`].
    pub fn from_env(id_var: &str, secret_var: &str) -> Result<Self, ConfigError> {
        let id = std::env::var(id_var).map_err(|_| {
            ConfigError::new(
                crate::error::ConfigErrorKind::Missing,
                id_var.to_owned(),
                "environment variable not set",
            )
        })?;
        let secret = Zeroizing::new(std::env::var(secret_var).map_err(|_| {
            ConfigError::new(
                crate::error::ConfigErrorKind::Missing,
                secret_var.to_owned(),
                "environment variable not set",
            )
        })?);
        Key::from_hex(id, &secret)
            .map(Self::new)
            .map_err(|e| e.within(secret_var))
    }

    /// Sets how long a rotated-out key keeps verifying.
    #[must_use]
    pub fn with_grace_period(self, grace: Duration) -> Self {
        self.write().grace = grace.as_secs();
        self
    }

    /// Adds a key that verifies (within its own window) but does not sign.
    ///
    /// # Errors
    ///
    /// When a key with the same id is already in the ring, or the ring is full ([`MAX_KEYS`]).
    pub fn with_key(self, key: Key) -> Result<Self, ConfigError> {
        {
            let mut ring = self.write();
            if ring.keys.contains_key(key.id()) {
                return Err(ConfigError::invalid(
                    "signing.keys",
                    "two keys have the same key id",
                ));
            }
            if ring.keys.len() >= MAX_KEYS {
                return Err(ConfigError::out_of_range(
                    "signing.keys",
                    "too many keys in the ring",
                ));
            }
            let key = Arc::new(key);
            ring.keys.insert(
                key.shared_id(),
                Entry {
                    key,
                    retired_at: None,
                },
            );
        }
        Ok(self)
    }

    /// Makes `key` the signing key at Unix time `now`; the previous signing key verifies until
    /// `now` + the grace period. Keys whose grace period is over are dropped.
    ///
    /// # Errors
    ///
    /// When `key`'s id is already in the ring, or the ring is full ([`MAX_KEYS`]).
    pub fn rotate(&self, key: Key, now: u64) -> Result<(), ConfigError> {
        let mut ring = self.write();
        let grace = ring.grace;
        ring.keys
            .retain(|_, e| e.retired_at.is_none_or(|at| now < at.saturating_add(grace)));
        if ring.keys.contains_key(key.id()) {
            return Err(ConfigError::invalid(
                "signing.keys",
                "the new key has the id of a key in the ring",
            ));
        }
        if ring.keys.len() >= MAX_KEYS {
            return Err(ConfigError::out_of_range(
                "signing.keys",
                "too many keys in the ring",
            ));
        }
        let old = ring.signing.shared_id();
        if let Some(e) = ring.keys.get_mut(&old) {
            e.retired_at = Some(now);
        }
        let key = Arc::new(key);
        ring.signing = key.clone();
        ring.keys.insert(
            key.shared_id(),
            Entry {
                key,
                retired_at: None,
            },
        );
        Ok(())
    }

    /// The current signing key.
    pub fn signing_key(&self) -> Arc<Key> {
        self.read().signing.clone()
    }

    /// The grace period of rotated-out keys.
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.read().grace)
    }

    /// The ids of the keys in the ring, in no particular order.
    pub fn key_ids(&self) -> Vec<String> {
        self.read().keys.keys().map(|k| k.to_string()).collect()
    }

    /// The key that may verify a signature made with `id` at Unix time `now`.
    pub(crate) fn verifying_key(&self, id: &str, now: u64) -> Result<Arc<Key>, SignatureError> {
        let ring = self.read();
        let Some(entry) = ring.keys.get(id) else {
            // The claimed id goes to the audit log: it is an sf-string (printable ASCII), cut
            // to 64 characters so a client cannot flood the log through it.
            let claimed: String = id.chars().take(64).collect();
            return Err(
                SignatureError::new(SignatureErrorKind::UnknownKey).with_key_id(Arc::from(claimed))
            );
        };
        let in_grace = entry
            .retired_at
            .is_none_or(|at| now < at.saturating_add(ring.grace));
        if !in_grace || !entry.key.in_window(now) {
            return Err(SignatureError::new(SignatureErrorKind::KeyNotValid)
                .with_key_id(entry.key.shared_id()));
        }
        Ok(entry.key.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.read();
        f.debug_struct("KeyRing")
            .field("signing_key", &ring.signing.id())
            .field("keys", &ring.keys.len())
            .field("grace_period_secs", &ring.grace)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, b: u8) -> Key {
        Key::hmac_sha256(id, &[b; 32]).unwrap()
    }

    #[test]
    fn short_secrets_and_bad_ids_are_refused() {
        assert!(Key::hmac_sha256("k", &[1; 31]).is_err());
        assert!(Key::hmac_sha256("", &[1; 32]).is_err());
        assert!(Key::hmac_sha256("a\"b", &[1; 32]).is_err());
        assert!(Key::hmac_sha256("k", &[1; 32]).is_ok());
    }

    #[test]
    fn hex_and_base64_load_the_same_secret() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let b64 = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=";
        assert!(Key::from_hex("k", hex).is_ok());
        assert!(Key::from_base64("k", b64).is_ok());
        assert!(Key::from_base64("k", b64.trim_end_matches('=')).is_ok());
        assert!(Key::from_hex("k", "zz").is_err());
        assert!(Key::from_hex("k", "abc").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = Key::from_hex("kid", &"ab".repeat(32)).unwrap();
        let s = format!("{k:?} {:?}", KeyRing::new(k.clone()));
        assert!(s.contains("kid"));
        assert!(!s.to_lowercase().contains("abab"));
        assert!(!s.contains("171")); // 0xab
    }

    #[test]
    fn rotation_keeps_the_old_key_for_the_grace_period() {
        let ring = KeyRing::new(key("old", 1)).with_grace_period(Duration::from_secs(100));
        ring.rotate(key("new", 2), 1_000).unwrap();
        assert_eq!(ring.signing_key().id(), "new");
        assert!(ring.verifying_key("old", 1_099).is_ok());
        assert_eq!(
            ring.verifying_key("old", 1_100).unwrap_err().kind(),
            SignatureErrorKind::KeyNotValid
        );
        assert!(ring.verifying_key("new", 5_000).is_ok());
        assert_eq!(
            ring.verifying_key("nope", 1_000).unwrap_err().kind(),
            SignatureErrorKind::UnknownKey
        );
        // The expired key is dropped at the next rotation.
        ring.rotate(key("newer", 3), 2_000).unwrap();
        assert!(!ring.key_ids().contains(&"old".to_owned()));
        assert!(ring.rotate(key("newer", 3), 2_001).is_err());
    }

    #[test]
    fn validity_window_is_enforced() {
        let ring = KeyRing::new(key("k", 1).not_before(10).not_after(20));
        assert!(ring.verifying_key("k", 9).is_err());
        assert!(ring.verifying_key("k", 10).is_ok());
        assert!(ring.verifying_key("k", 20).is_err());
    }

    #[test]
    fn from_env_reports_missing_variables() {
        // `std::env::set_var` needs `unsafe` in edition 2024 (forbidden here): only the
        // unset case is tested in-process.
        let err = KeyRing::from_env(
            "BATTLEMENT_TEST_UNSET_ID_X",
            "BATTLEMENT_TEST_UNSET_SECRET_X",
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::ConfigErrorKind::Missing);
    }
}
