//! Where keys are looked up: the [`ApiKeyStore`] trait, the in-memory [`ApiKeys`], its serde
//! configuration and the clock that decides expiry.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Deserialize;

use super::{
    key::KeyHash,
    principal::{Principal, PrincipalId},
};
use crate::error::{ConfigError, ConfigErrorKind};

/// The environment variable the example server and the stack read API-key hashes from.
pub const ENV_API_KEY_HASHES: &str = "BATTLEMENT_API_KEY_HASHES";

/// The most keys an [`ApiKeys`] store holds.
pub const MAX_KEYS: usize = 1_000_000;

/// A stored key: its hash, the principal it stands for and its own not-after time.
#[derive(Clone)]
pub struct KeyEntry {
    hash: KeyHash,
    principal: Principal,
    not_after: Option<SystemTime>,
}

impl KeyEntry {
    /// An entry for the key hashing to `hash`, valid until `not_after` (inclusive) if given.
    pub fn new(hash: KeyHash, principal: Principal, not_after: Option<SystemTime>) -> Self {
        Self {
            hash,
            principal,
            not_after,
        }
    }

    /// The hash of the key.
    pub fn hash(&self) -> &KeyHash {
        &self.hash
    }

    /// The principal the key stands for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The last instant this key is accepted, if it has one of its own. The principal's
    /// [`Principal::expires_at`] applies as well.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// The earlier of the key's and the principal's expiry.
    pub fn effective_expiry(&self) -> Option<SystemTime> {
        match (self.not_after, self.principal.expires_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The principal, without a reference-count bump.
    pub fn into_principal(self) -> Principal {
        self.principal
    }

    /// Whether the key is expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.effective_expiry().is_some_and(|t| now > t)
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("hash", &self.hash)
            .field("principal", &self.principal)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Finds the entry of a key from the SHA-256 hash of the presented key.
///
/// Lookups are synchronous: they run in `call` on every request. Keep the store in memory and
/// refresh it in the background if keys live elsewhere.
///
/// The layer compares the hash of the returned entry with the presented one in constant time
/// before accepting it, so a store may use any index (a `HashMap` keyed by the hash, a database
/// index, ...): what such an index can leak through timing is about the *hash* of the presented
/// key, which tells nothing about any valid key (SHA-256 is preimage resistant).
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The entry of the key hashing to `hash`, if any.
    fn lookup(&self, hash: &KeyHash) -> Option<KeyEntry>;
}

impl<T: ApiKeyStore + ?Sized> ApiKeyStore for Arc<T> {
    fn lookup(&self, hash: &KeyHash) -> Option<KeyEntry> {
        (**self).lookup(hash)
    }
}

/// The wall clock that decides whether a key is expired. Inject one in tests.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// [`SystemTime::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// The in-memory key store: a hash map from key hash to [`KeyEntry`], immutable once built and
/// cheap to clone (an `Arc`).
///
/// Build it with [`ApiKeys::builder`], from configuration with [`ApiKeys::from_config`], or
/// from the environment with [`ApiKeys::from_env_hashes`].
///
/// The map is keyed by the SHA-256 of the key, with the standard library's randomly seeded
/// SipHash: the time a lookup takes depends on the hash of the presented key (not on any stored
/// key), and the found entry is then compared in constant time. See [`ApiKeyStore`].
#[derive(Clone, Default)]
pub struct ApiKeys {
    map: Arc<HashMap<[u8; 32], KeyEntry>>,
}

impl ApiKeys {
    /// A builder of an in-memory store.
    pub fn builder() -> ApiKeysBuilder {
        ApiKeysBuilder::default()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys (every request is then refused).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Builds the store from its serde configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`principals[1].keys[0].hash`, ...) when an id,
    /// scope, hash or time is invalid, an id or a hash appears twice, or there are more than
    /// [`MAX_KEYS`] keys.
    pub fn from_config(config: &ApiKeysConfig) -> Result<Self, ConfigError> {
        let mut builder = Self::builder();
        builder.add_principals(&config.principals)?;
        Ok(builder.finish())
    }

    /// Builds the store from an environment variable holding comma-separated hex SHA-256
    /// hashes (`BATTLEMENT_API_KEY_HASHES`, say). Each key is its own principal, named
    /// `key-<first 8 hex digits>`, with no scopes and no expiry.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field: the variable's name) when the variable is unset, not UTF-8,
    /// empty, or holds an invalid or duplicate hash; the error never repeats the value.
    pub fn from_env_hashes(var: &str) -> Result<Self, ConfigError> {
        let value = read_env(var)?;
        Self::from_hash_list(&value).map_err(|e| {
            let field = format!("{var}{}", e.field());
            rename(e, field)
        })
    }

    /// Builds the store from comma-separated hex SHA-256 hashes, as
    /// [`ApiKeys::from_env_hashes`] does with the variable's value. Blanks around items and
    /// empty items are ignored.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `[i]`, the index of the item) for an invalid or duplicate
    /// hash, or (empty field) when the list has no hash at all.
    pub fn from_hash_list(list: &str) -> Result<Self, ConfigError> {
        let mut builder = Self::builder();
        if builder.add_hash_list(list)? == 0 {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "",
                "no key hash is given",
            ));
        }
        Ok(builder.finish())
    }
}

impl ApiKeyStore for ApiKeys {
    fn lookup(&self, hash: &KeyHash) -> Option<KeyEntry> {
        self.map.get(hash.as_bytes()).cloned()
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.map.len())
            .finish_non_exhaustive()
    }
}

/// Builds an [`ApiKeys`] store in code.
///
/// ```
/// use battlement::auth::api_key::{hash_key, ApiKeys, Principal, PrincipalId};
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let billing = Principal::with_scopes(PrincipalId::new("billing")?, ["invoices:read"], None)?;
/// let keys = ApiKeys::builder()
///     .key(hash_key("bk_live_new"), &billing)
///     // the old key keeps working during the rotation, until its own not-after
///     .key_until(hash_key("bk_live_old"), &billing, UNIX_EPOCH + Duration::from_secs(1_900_000_000))
///     .build()?;
/// assert_eq!(keys.len(), 2);
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Default)]
pub struct ApiKeysBuilder {
    entries: Vec<KeyEntry>,
    error: Option<ConfigError>,
    seen: HashSet<[u8; 32]>,
}

impl ApiKeysBuilder {
    /// Adds a key (by its hash) for `principal`, with no expiry of its own.
    #[must_use]
    pub fn key(self, hash: KeyHash, principal: &Principal) -> Self {
        self.entry(KeyEntry::new(hash, principal.clone(), None))
    }

    /// Adds a key (by its hash) for `principal`, accepted until `not_after` (inclusive).
    #[must_use]
    pub fn key_until(self, hash: KeyHash, principal: &Principal, not_after: SystemTime) -> Self {
        self.entry(KeyEntry::new(hash, principal.clone(), Some(not_after)))
    }

    /// Adds an entry.
    #[must_use]
    pub fn entry(mut self, entry: KeyEntry) -> Self {
        if self.error.is_none() {
            let index = self.entries.len();
            if let Err(e) = self.push(entry, || format!("keys[{index}]")) {
                self.error = Some(e);
            }
        }
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `keys[i]`) when a hash was added twice or there are more than
    /// [`MAX_KEYS`] keys.
    pub fn build(self) -> Result<ApiKeys, ConfigError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.finish()),
        }
    }

    /// Adds the principals of a configuration; fields in errors are `principals[i]...`.
    pub(crate) fn add_principals(
        &mut self,
        principals: &[PrincipalConfig],
    ) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        for (i, p) in principals.iter().enumerate() {
            let at = |e: ConfigError| e.within(&format!("principals[{i}]"));
            let id = PrincipalId::new(&p.id).map_err(at)?;
            if !ids.insert(id.clone()) {
                return Err(at(ConfigError::invalid(
                    "id",
                    "the same principal id appears twice",
                )));
            }
            let expires_at = p
                .expires_at
                .as_ref()
                .map(|e| e.to_system_time().map_err(|e| e.within("expires_at")))
                .transpose()
                .map_err(at)?;
            let principal = Principal::with_scopes(id, &p.scopes, expires_at).map_err(at)?;
            for (k, key) in p.keys.iter().enumerate() {
                let at_key = |e: ConfigError| at(e.within(&format!("keys[{k}]")));
                let (hash, not_after) = match key {
                    KeyConfig::Hash(hash) => (hash, None),
                    KeyConfig::WithExpiry { hash, not_after } => (hash, not_after.as_ref()),
                };
                let hash = KeyHash::from_hex(hash).map_err(|e| at_key(rename(e, "hash")))?;
                let not_after = not_after
                    .map(|e| e.to_system_time().map_err(|e| e.within("not_after")))
                    .transpose()
                    .map_err(at_key)?;
                self.push(KeyEntry::new(hash, principal.clone(), not_after), || {
                    format!("principals[{i}].keys[{k}].hash")
                })?;
            }
        }
        Ok(())
    }

    /// Adds comma-separated hex hashes, each its own principal `key-<8 hex>`; fields in
    /// errors are `[i]`. Returns how many were added.
    pub(crate) fn add_hash_list(&mut self, list: &str) -> Result<usize, ConfigError> {
        let mut added = 0;
        for (i, item) in list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let hash = KeyHash::from_hex(item).map_err(|e| rename(e, format!("[{i}]")))?;
            let id = PrincipalId::new(&format!("key-{}", hash.short()))?;
            self.push(KeyEntry::new(hash, Principal::new(id), None), || {
                format!("[{i}]")
            })?;
            added += 1;
        }
        Ok(added)
    }

    fn push(&mut self, entry: KeyEntry, field: impl Fn() -> String) -> Result<(), ConfigError> {
        if self.entries.len() >= MAX_KEYS {
            return Err(ConfigError::out_of_range(
                field(),
                "more than 1,000,000 API keys",
            ));
        }
        if !self.seen.insert(*entry.hash.as_bytes()) {
            return Err(ConfigError::invalid(
                field(),
                "the same key hash appears twice",
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    fn finish(self) -> ApiKeys {
        let map = self
            .entries
            .into_iter()
            .map(|e| (*e.hash.as_bytes(), e))
            .collect();
        ApiKeys { map: Arc::new(map) }
    }
}

impl fmt::Debug for ApiKeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeysBuilder")
            .field("keys", &self.entries.len())
            .field("error", &self.error)
            .finish()
    }
}

/// The value of the environment variable `var`.
pub(crate) fn read_env(var: &str) -> Result<String, ConfigError> {
    match std::env::var(var) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Err(ConfigError::new(
            ConfigErrorKind::Missing,
            var.to_owned(),
            "the environment variable is not set",
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::invalid(
            var.to_owned(),
            "the environment variable is not UTF-8",
        )),
    }
}

pub(crate) fn rename(
    e: ConfigError,
    field: impl Into<std::borrow::Cow<'static, str>>,
) -> ConfigError {
    ConfigError::new(e.kind(), field, e.reason().to_owned())
}

/// The serde configuration of an [`ApiKeys`] store.
///
/// In TOML:
///
/// ```toml
/// [[principals]]
/// id = "billing"
/// scopes = ["invoices:read", "invoices:write"]
/// expires_at = "2027-01-01T00:00:00Z"          # optional: RFC 3339 or unix seconds
/// keys = [
///   "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
///   { hash = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3", not_after = 1798761600 },
/// ]
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The principals and their keys.
    #[serde(default)]
    pub principals: Vec<PrincipalConfig>,
}

/// One principal of an [`ApiKeysConfig`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The principal id (1 to 128 visible ASCII characters).
    pub id: String,
    /// The scopes granted (RFC 6749 scope tokens).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When every key of this principal stops being accepted.
    #[serde(default)]
    pub expires_at: Option<Expiry>,
    /// The principal's keys, by hash; several during a rotation.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

/// A key of a [`PrincipalConfig`]: its hex SHA-256 hash, optionally with its own not-after.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum KeyConfig {
    /// Just the hash (64 hex digits).
    Hash(String),
    /// The hash and the last instant the key is accepted.
    WithExpiry {
        /// The hash (64 hex digits).
        hash: String,
        /// The last instant the key is accepted.
        #[serde(default)]
        not_after: Option<Expiry>,
    },
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a short prefix of the hash: a whole hash lets a log reader test guesses offline.
        let (hash, not_after) = match self {
            Self::Hash(h) => (h, None),
            Self::WithExpiry { hash, not_after } => (hash, not_after.as_ref()),
        };
        let short: String = hash.trim().chars().take(8).collect();
        f.debug_struct("KeyConfig")
            .field("hash", &format_args!("{short}…"))
            .field("not_after", &not_after)
            .finish()
    }
}

/// A point in time in configuration: unix seconds or an RFC 3339 timestamp
/// (`2027-01-01T00:00:00Z`, `2027-01-01T01:00:00.5+01:00`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expiry {
    /// Seconds since 1970-01-01T00:00:00Z.
    UnixSeconds(u64),
    /// An RFC 3339 date-time with an offset.
    Rfc3339(String),
}

impl Expiry {
    /// The instant.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the RFC 3339 text does not parse, names a date that does not
    /// exist, or lies before 1970 or after 9999.
    pub fn to_system_time(&self) -> Result<SystemTime, ConfigError> {
        let secs = match self {
            Self::UnixSeconds(s) => Some(Duration::from_secs(*s)),
            Self::Rfc3339(s) => parse_rfc3339(s),
        };
        secs.and_then(|d| UNIX_EPOCH.checked_add(d)).ok_or_else(|| {
            ConfigError::invalid(
                "",
                "expected unix seconds or an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
            )
        })
    }
}

/// Parses an RFC 3339 `date-time` into the duration since the unix epoch.
fn parse_rfc3339(s: &str) -> Option<Duration> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, d) in frac[..n].iter().enumerate() {
            if i < 9 {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
            }
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let (oh, om) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(Duration::new(secs, nanos))
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::hash_key;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_known_values() {
        let p = |s: &str| Expiry::Rfc3339(s.into()).to_system_time().ok();
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(p("2027-01-01T00:00:00Z"), Some(at(1_798_761_600)));
        assert_eq!(p("2027-01-01T01:00:00+01:00"), Some(at(1_798_761_600)));
        assert_eq!(p("2026-12-31T23:00:00-01:00"), Some(at(1_798_761_600)));
        assert_eq!(p("2000-02-29T12:00:00z"), Some(at(951_825_600)));
        assert_eq!(
            p("2027-01-01T00:00:00.25Z"),
            Some(at(1_798_761_600) + Duration::from_millis(250))
        );
        assert_eq!(p("2001-02-29T00:00:00Z"), None);
        assert_eq!(p("2027-13-01T00:00:00Z"), None);
        assert_eq!(p("2027-01-01T24:00:00Z"), None);
        assert_eq!(p("2027-01-01T00:00:00"), None);
        assert_eq!(p("2027-01-01T00:00:00.Z"), None);
        assert_eq!(p("1969-12-31T23:59:59Z"), None);
        assert_eq!(p("2027-01-01T00:00:00+1:00"), None);
        assert_eq!(p("२०२७-01-01T00:00:00Z"), None);
        assert_eq!(Expiry::UnixSeconds(5).to_system_time().ok(), Some(at(5)));
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_round_trips_unix_seconds(secs in 0u64..253_402_300_799) {
            // Format with the inverse of days_from_civil and parse back.
            let days = (secs / 86_400) as i64;
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z.rem_euclid(146_097);
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            let tod = secs % 86_400;
            let text = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                tod / 3600,
                tod / 60 % 60,
                tod % 60
            );
            let parsed = Expiry::Rfc3339(text).to_system_time().unwrap();
            proptest::prop_assert_eq!(parsed, at(secs));
        }

        #[test]
        fn rfc3339_never_panics(s in "\\PC{0,45}") {
            let _ = parse_rfc3339(&s);
        }
    }

    #[test]
    fn config_from_toml() {
        let k1 = hash_key("one").to_hex();
        let k2 = hash_key("two").to_hex();
        let text = format!(
            r#"
            [[principals]]
            id = "billing"
            scopes = ["invoices:read"]
            expires_at = "2030-01-01T00:00:00Z"
            keys = ["{k1}", {{ hash = "{k2}", not_after = 1798761600 }}]
            "#
        );
        let config: ApiKeysConfig = toml::from_str(&text).unwrap();
        let keys = ApiKeys::from_config(&config).unwrap();
        assert_eq!(keys.len(), 2);
        let e1 = keys.lookup(&hash_key("one")).unwrap();
        let e2 = keys.lookup(&hash_key("two")).unwrap();
        assert_eq!(e1.principal(), e2.principal());
        assert_eq!(e1.principal().id().as_str(), "billing");
        assert_eq!(e2.not_after(), Some(at(1_798_761_600)));
        assert_eq!(e2.effective_expiry(), Some(at(1_798_761_600)));
        assert!(!e1.is_expired_at(at(1_798_761_601)));
        assert!(e2.is_expired_at(at(1_798_761_601)));
        assert!(!e2.is_expired_at(at(1_798_761_600)));
        assert!(keys.lookup(&hash_key("three")).is_none());
        // The hash is not in Debug.
        assert!(!format!("{config:?}").contains(&k1));
    }

    #[test]
    fn config_errors_name_the_field() {
        let k1 = hash_key("one").to_hex();
        let cases = [
            (
                format!(
                    r#"[[principals]]
                id = "a"
                keys = ["{k1}", "nothex"]"#
                ),
                "principals[0].keys[1].hash",
            ),
            (
                format!(
                    r#"[[principals]]
                id = "a"
                keys = ["{k1}"]
                [[principals]]
                id = "b"
                keys = ["{k1}"]"#
                ),
                "principals[1].keys[0].hash",
            ),
            (
                r#"[[principals]]
                id = "a"
                [[principals]]
                id = "a""#
                    .to_owned(),
                "principals[1].id",
            ),
            (
                format!(
                    r#"[[principals]]
                id = "a"
                keys = [{{ hash = "{k1}", not_after = "tomorrow" }}]"#
                ),
                "principals[0].keys[0].not_after",
            ),
            (
                r#"[[principals]]
                id = "a b""#
                    .to_owned(),
                "principals[0].id",
            ),
            (
                r#"[[principals]]
                id = "a"
                scopes = ["x", "y z"]"#
                    .to_owned(),
                "principals[0].scopes[1]",
            ),
        ];
        for (text, field) in cases {
            let config: ApiKeysConfig = toml::from_str(&text).unwrap();
            let err = ApiKeys::from_config(&config).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(!err.to_string().contains(&k1));
        }
    }

    #[test]
    fn hash_lists() {
        let (a, b) = (hash_key("a"), hash_key("b"));
        let keys = ApiKeys::from_hash_list(&format!(" {} ,{},", a.to_hex(), b.to_hex())).unwrap();
        assert_eq!(keys.len(), 2);
        let e = keys.lookup(&a).unwrap();
        assert_eq!(e.principal().id().as_str(), format!("key-{}", a.short()));
        assert_ne!(e.principal(), keys.lookup(&b).unwrap().principal());
        assert_eq!(
            ApiKeys::from_hash_list(" , ").unwrap_err().kind(),
            ConfigErrorKind::Missing
        );
        assert_eq!(
            ApiKeys::from_hash_list(&format!("{},zz", a.to_hex()))
                .unwrap_err()
                .field(),
            "[1]"
        );
        assert!(ApiKeys::from_hash_list(&format!("{0},{0}", a.to_hex())).is_err());
        let err = ApiKeys::from_env_hashes("BATTLEMENT_TEST_SURELY_UNSET_VAR_9f3a").unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Missing);
        assert_eq!(err.field(), "BATTLEMENT_TEST_SURELY_UNSET_VAR_9f3a");
    }

    #[test]
    fn builder_rejects_duplicates() {
        let p = Principal::new(PrincipalId::new("p").unwrap());
        let err = ApiKeys::builder()
            .key(hash_key("x"), &p)
            .key(hash_key("x"), &p)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "keys[1]");
        assert!(format!("{:?}", ApiKeys::builder().key(hash_key("x"), &p)).contains("keys: 1"));
    }
}
