//! Serde configuration of the verify side, for config files and the stack builder.

use std::{fmt, time::Duration};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    key::{Key, KeyRing},
    verify::{NonceRequirement, VerifyPolicy},
};
use crate::{error::ConfigError, net::Scheme};

/// One key as written in a config file. The secret is hex, or base64 when prefixed with
/// `base64:`. `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id.
    pub id: String,
    /// The secret: hex, or `base64:<base64>`.
    #[serde(deserialize_with = "zeroizing")]
    pub secret: Zeroizing<String>,
    /// Unix time from which the key is valid.
    #[serde(default)]
    pub not_before: Option<u64>,
    /// Unix time until which the key is valid.
    #[serde(default)]
    pub not_after: Option<u64>,
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

impl KeyConfig {
    /// Builds the key.
    ///
    /// # Errors
    ///
    /// As [`Key::from_hex`] / [`Key::from_base64`].
    pub fn to_key(&self) -> Result<Key, ConfigError> {
        let key = match self.secret.strip_prefix("base64:") {
            Some(b64) => Key::from_base64(self.id.clone(), b64)?,
            None => Key::from_hex(self.id.clone(), &self.secret)?,
        };
        let key = match self.not_before {
            Some(t) => key.not_before(t),
            None => key,
        };
        Ok(match self.not_after {
            Some(t) => key.not_after(t),
            None => key,
        })
    }
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The `[signing]` section of a config file.
///
/// ```
/// let toml = r#"
///     keys = [{ id = "partner-1", secret = "0011223344556677889900112233445566778899001122334455667788990011" }]
///     max_age_secs = 120
/// "#;
/// let config: battlement::signing::SigningConfig = toml::from_str(toml).unwrap();
/// let ring = config.key_ring().unwrap();
/// assert_eq!(ring.signing_key().id(), "partner-1");
/// assert!(!format!("{config:?}").contains("0011223344"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The keys; the first one signs, the others verify.
    pub keys: Vec<KeyConfig>,
    /// Grace period of a rotated-out key, in seconds (default 7 days).
    #[serde(default)]
    pub grace_period_secs: Option<u64>,
    /// Components every signature must cover (default `@method`, `@authority`, `@target-uri`).
    #[serde(default)]
    pub required_components: Option<Vec<String>>,
    /// Maximum age of `created` in seconds (default 300).
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// Allowed clock skew in seconds (default 60).
    #[serde(default)]
    pub clock_skew_secs: Option<u64>,
    /// Whether a nonce is required (default `true`).
    #[serde(default)]
    pub require_nonce: Option<bool>,
    /// Most body bytes buffered to check `Content-Digest` (default 1 MiB).
    #[serde(default)]
    pub body_limit: Option<usize>,
    /// Assume `https` for requests whose URI has no scheme (behind a TLS proxy).
    #[serde(default)]
    pub assume_https: bool,
}

impl SigningConfig {
    /// Builds the key ring.
    ///
    /// # Errors
    ///
    /// When there is no key, a key is invalid, or two keys share an id; the field path names
    /// the key (`keys[1].secret`).
    pub fn key_ring(&self) -> Result<KeyRing, ConfigError> {
        let mut keys = self.keys.iter().enumerate();
        let Some((_, first)) = keys.next() else {
            return Err(ConfigError::new(
                crate::error::ConfigErrorKind::Missing,
                "keys",
                "at least one key is needed",
            ));
        };
        let mut ring = KeyRing::new(first.to_key().map_err(|e| e.within("keys[0]"))?);
        if let Some(g) = self.grace_period_secs {
            ring = ring.with_grace_period(Duration::from_secs(g));
        }
        for (i, k) in keys {
            let key = k.to_key().map_err(|e| e.within(&format!("keys[{i}]")))?;
            ring = ring
                .with_key(key)
                .map_err(|e| e.within(&format!("keys[{i}]")))?;
        }
        Ok(ring)
    }

    /// Builds the verify policy.
    ///
    /// # Errors
    ///
    /// When a required component is not a valid identifier.
    pub fn policy(&self) -> Result<VerifyPolicy, ConfigError> {
        let mut p = VerifyPolicy::new();
        if let Some(c) = &self.required_components {
            p = p.required_components(c).map_err(|e| {
                ConfigError::new(e.kind(), "required_components", e.reason().to_owned())
            })?;
        }
        if let Some(s) = self.max_age_secs {
            p = p.max_age(Duration::from_secs(s));
        }
        if let Some(s) = self.clock_skew_secs {
            p = p.clock_skew(Duration::from_secs(s));
        }
        if self.require_nonce == Some(false) {
            p = p.nonce(NonceRequirement::Optional);
        }
        if let Some(n) = self.body_limit {
            p = p.body_limit(n);
        }
        if self.assume_https {
            p = p.assume_scheme(Scheme::Https);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let c: SigningConfig = toml::from_str(
            r#"keys = [
                { id = "a", secret = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
                { id = "b", secret = "abcd" },
            ]"#,
        )
        .unwrap();
        let err = c.key_ring().unwrap_err();
        assert_eq!(err.field(), "keys[1].signing.secret");
        let empty: SigningConfig = toml::from_str("keys = []").unwrap();
        assert!(empty.key_ring().is_err());
        let bad: SigningConfig = toml::from_str(
            r#"keys = [{ id = "a", secret = "00" }]
               required_components = ["@status"]"#,
        )
        .unwrap();
        assert_eq!(bad.policy().unwrap_err().field(), "required_components");
    }
}
