//! Secrets referenced from the environment or a file.

use std::{fmt, io::Read, path::PathBuf};

use serde::{Deserialize, Deserializer, de};
use zeroize::Zeroizing;

use crate::error::{ConfigError, ConfigErrorKind};

/// Largest secret file read (64 KiB): a secret is a key or a URL, not a document.
const MAX_FILE: u64 = 64 * 1024;

/// Where a secret comes from: `{ env = "VAR" }`, `{ file = "/run/secrets/x" }`, or an inline
/// string (development only; [`audit`](crate::stack::audit) flags it).
///
/// `Debug` shows the variable name or the path, never an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value of an environment variable, read by [`resolve`](Self::resolve).
    Env(String),
    /// The content of a file (trailing newline removed), read by [`resolve`](Self::resolve).
    File(PathBuf),
    /// The value itself, written in the configuration.
    Inline(Zeroizing<String>),
}

impl SecretSource {
    /// Whether the value is written in the configuration itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, Self::Inline(_))
    }

    /// Reads the secret.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] of kind `Missing` (field `env.VAR` or `file`) when the variable is
    /// unset or not UTF-8 or the file cannot be read, is larger than 64 KiB or is not UTF-8;
    /// `Missing` too when the secret is empty. The error never contains the value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        let value = match self {
            Self::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
                ConfigError::new(
                    ConfigErrorKind::Missing,
                    format!("env.{var}"),
                    "the environment variable is unset or not UTF-8",
                )
            })?),
            Self::File(path) => read_file(path)?,
            Self::Inline(v) => v.clone(),
        };
        if value.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "",
                "the secret is empty",
            ));
        }
        Ok(Secret(value))
    }
}

fn read_file(path: &PathBuf) -> Result<Zeroizing<String>, ConfigError> {
    let unreadable = |why: &'static str| ConfigError::new(ConfigErrorKind::Missing, "file", why);
    let file = std::fs::File::open(path).map_err(|_| unreadable("the file cannot be opened"))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| unreadable("the file cannot be read"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ConfigError::out_of_range(
            "file",
            "the file is larger than 64 KiB",
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| unreadable("the file is not UTF-8"))?;
    Ok(Zeroizing::new(
        text.strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text)
            .to_owned(),
    ))
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "SecretSource::Env({var:?})"),
            Self::File(path) => write!(f, "SecretSource::File({path:?})"),
            Self::Inline(_) => f.write_str("SecretSource::Inline(<redacted>)"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{ env = \"VAR\" }, { file = \"/path\" } or a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Inline(Zeroizing::new(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SecretSource, E> {
                Ok(SecretSource::Inline(Zeroizing::new(v)))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("expected `env` or `file`"));
                };
                let source = match key.as_str() {
                    "env" => SecretSource::Env(map.next_value()?),
                    "file" => SecretSource::File(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a secret has exactly one of `env` or `file`",
                    ));
                }
                Ok(source)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A resolved secret: wiped from memory on drop; `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        s: SecretSource,
    }

    #[test]
    fn parses_the_three_forms() {
        let t: T = toml::from_str(r#"s = { env = "HOME" }"#).unwrap();
        assert_eq!(t.s, SecretSource::Env("HOME".into()));
        let t: T = toml::from_str(r#"s = { file = "/run/secrets/k" }"#).unwrap();
        assert_eq!(t.s, SecretSource::File("/run/secrets/k".into()));
        let t: T = toml::from_str(r#"s = "hunter2""#).unwrap();
        assert!(t.s.is_inline());
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(toml::from_str::<T>(r#"s = { vault = "x" }"#).is_err());
        assert!(toml::from_str::<T>(r#"s = { env = "A", file = "b" }"#).is_err());
        assert!(toml::from_str::<T>("s = {}").is_err());
    }

    #[test]
    fn resolves_files_and_reports_missing_vars() {
        let dir = std::env::temp_dir().join(format!("battlement-secret-{}", std::process::id()));
        std::fs::write(&dir, "s3cret-value\n").unwrap();
        let secret = SecretSource::File(dir.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret-value");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        std::fs::remove_file(&dir).unwrap();
        let err = SecretSource::File(dir).resolve().unwrap_err();
        assert_eq!(err.field(), "file");
        let err = SecretSource::Env("BATTLEMENT_TEST_UNSET_3f9a".into())
            .resolve()
            .unwrap_err();
        assert_eq!(err.field(), "env.BATTLEMENT_TEST_UNSET_3f9a");
        assert_eq!(err.kind(), ConfigErrorKind::Missing);
    }
}
