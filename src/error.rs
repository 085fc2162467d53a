//! Configuration errors shared by every layer.
//!
//! ```
//! use battlement::{ConfigErrorKind, net::TrustedProxies};
//!
//! // Every constructor that validates a value says which one failed, and why.
//! let err = TrustedProxies::new(["10.0.0.0/8", "not a range"]).unwrap_err();
//! assert_eq!(err.kind(), ConfigErrorKind::Invalid);
//! assert!(!err.reason().is_empty());
//! println!("{err}"); // names the field and the reason, never a secret
//! ```
//!
//! A [`ConfigError`] is an opaque struct: match on [`ConfigError::kind`] (a
//! `#[non_exhaustive]` [`ConfigErrorKind`]), read [`ConfigError::field`] for the path of the
//! setting (`"rate_limit.per_ip.requests"` when it comes from the stack's config), and show
//! its `Display` to the operator. Errors at request time are not `ConfigError`s: they are
//! problem+json responses ([`crate::problem`]) whose typed cause is in the response
//! extensions.

use std::{borrow::Cow, fmt};

/// A configuration value was rejected.
///
/// Returned by every constructor or builder of this crate that parses or validates a value
/// (a CIDR range, a header name, a CSP directive, a key, a quota, ...). The message names the
/// offending field and why it was rejected; it never contains a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

/// What kind of configuration error a [`ConfigError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The value could not be parsed (syntax).
    Invalid,
    /// The value parsed but is outside the accepted range (too short, too long, zero, ...).
    OutOfRange,
    /// The value is refused because it would be unsafe (an injection, a wildcard with credentials, ...).
    Unsafe,
    /// A required value is missing.
    Missing,
}

impl ConfigError {
    /// Makes an error of `kind` about `field`, explained by `reason`.
    ///
    /// `field` is the path of the offending setting (`"security_headers.csp.script-src"`);
    /// `reason` must not contain secret material.
    pub fn new(
        kind: ConfigErrorKind,
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ConfigErrorKind::Invalid`].
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Invalid, field, reason)
    }

    /// Shorthand for [`ConfigErrorKind::OutOfRange`].
    pub fn out_of_range(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::OutOfRange, field, reason)
    }

    /// Shorthand for [`ConfigErrorKind::Unsafe`].
    pub fn unsafe_value(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Unsafe, field, reason)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The path of the offending field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the value was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Returns the same error with `prefix.` put before its field path, for nested configs.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            Cow::Owned(prefix.to_owned())
        } else {
            Cow::Owned(format!("{prefix}.{}", self.field))
        };
        self
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("kind", &self.kind)
            .field("field", &self.field)
            .field("reason", &self.reason)
            .finish()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field() {
        let err =
            ConfigError::invalid("csp.script-src", "unquoted keyword `self`").within("headers");
        assert_eq!(err.field(), "headers.csp.script-src");
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid configuration at `headers.csp.script-src`: unquoted keyword `self`"
        );
    }
}
