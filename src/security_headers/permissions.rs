//! The validating `Permissions-Policy` builder.

use std::fmt;

use crate::error::ConfigError;

/// Powerful features a site that does not use them should switch off.
const POWERFUL_FEATURES: &[&str] = &[
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "geolocation",
    "gyroscope",
    "magnetometer",
    "microphone",
    "midi",
    "payment",
    "publickey-credentials-get",
    "serial",
    "usb",
    "xr-spatial-tracking",
];

/// A `Permissions-Policy` header: which origins may use which browser feature.
///
/// Each feature maps to an allow-list: empty (`()`: nobody, not even this site), `self`, `src`
/// (for iframes), origins (`https://maps.example`, wildcard subdomains allowed), or `*`
/// (everyone). Origins are quoted for you, as the structured-field syntax requires.
///
/// ```
/// use battlement::security_headers::PermissionsPolicy;
///
/// let pp = PermissionsPolicy::new()
///     .deny("camera")?
///     .allow("geolocation", ["self", "https://maps.example"])?
///     .allow("fullscreen", ["*"])?;
/// assert_eq!(
///     pp.to_string(),
///     r#"camera=(), geolocation=(self "https://maps.example"), fullscreen=*"#
/// );
/// assert!(PermissionsPolicy::new().allow("camera", ["'self'"]).is_err());
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionsPolicy {
    features: Vec<(String, String)>,
}

impl PermissionsPolicy {
    /// An empty policy (every feature at its browser default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Denies to everyone the powerful features most sites never use: accelerometer,
    /// autoplay, camera, display-capture, geolocation, gyroscope, magnetometer, microphone,
    /// midi, payment, publickey-credentials-get, serial, usb, xr-spatial-tracking.
    pub fn deny_powerful_features() -> Self {
        Self {
            features: POWERFUL_FEATURES
                .iter()
                .map(|f| ((*f).to_owned(), "()".to_owned()))
                .collect(),
        }
    }

    /// Allows `feature` to the origins of `allowlist` (replacing a previous entry).
    ///
    /// Items: `self`, `src`, `*` (alone), or an origin `scheme://host[:port]` without path.
    /// An empty list denies the feature to everyone.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `permissions_policy.<feature>` when the feature name is not
    /// lowercase letters, digits and `-`, or an item is not one of the above (CSP habits such
    /// as `'self'` or `'none'` are refused with a hint).
    pub fn allow<I, S>(mut self, feature: &str, allowlist: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let feature = feature.trim();
        let valid_name = feature
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
            && feature
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(ConfigError::invalid(
                "permissions_policy",
                format!(
                    "`{}` is not a feature name (lowercase letters, digits, `-`)",
                    feature
                        .chars()
                        .take(64)
                        .collect::<String>()
                        .escape_default()
                ),
            ));
        }
        let field = || format!("permissions_policy.{feature}");
        let mut items: Vec<String> = Vec::new();
        let mut star = false;
        for item in allowlist {
            let item = item.as_ref();
            match item {
                "*" => star = true,
                "self" | "src" => items.push(item.to_owned()),
                "'self'" | "'src'" | "'none'" | "none" | "()" => {
                    return Err(ConfigError::invalid(
                        field(),
                        format!(
                            "`{item}` is CSP/Feature-Policy syntax: write `self`, `src`, or an empty list to deny"
                        ),
                    ));
                }
                origin => {
                    check_origin(origin).map_err(|why| ConfigError::invalid(field(), why))?;
                    items.push(format!("\"{origin}\""));
                }
            }
        }
        let value = if star {
            if !items.is_empty() {
                return Err(ConfigError::invalid(field(), "`*` must be alone"));
            }
            "*".to_owned()
        } else {
            format!("({})", items.join(" "))
        };
        if let Some(entry) = self.features.iter_mut().find(|(f, _)| f == feature) {
            entry.1 = value;
        } else {
            self.features.push((feature.to_owned(), value));
        }
        Ok(self)
    }

    /// Denies `feature` to everyone (`feature=()`).
    ///
    /// # Errors
    ///
    /// As [`allow`](Self::allow), for a malformed feature name.
    pub fn deny(self, feature: &str) -> Result<Self, ConfigError> {
        self.allow(feature, [""; 0])
    }

    /// Removes `feature` from the policy.
    #[must_use]
    pub fn remove(mut self, feature: &str) -> Self {
        self.features.retain(|(f, _)| f != feature.trim());
        self
    }

    /// Whether the policy names no feature.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }
}

impl fmt::Display for PermissionsPolicy {
    /// The header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (feature, value)) in self.features.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{feature}={value}")?;
        }
        Ok(())
    }
}

fn check_origin(origin: &str) -> Result<(), String> {
    let shown = || {
        origin
            .chars()
            .take(64)
            .collect::<String>()
            .escape_default()
            .to_string()
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "`{}` is not `self`, `src`, `*` or an origin like `https://example.com`",
            shown()
        ));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let host_ok = !rest.is_empty()
        && rest.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']' | b'*')
        });
    if !scheme_ok || !host_ok {
        return Err(format!(
            "`{}` is not an origin `scheme://host[:port]` (no path, quotes, spaces or control characters)",
            shown()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let pp = PermissionsPolicy::deny_powerful_features()
            .allow("camera", ["self"])
            .unwrap()
            .remove("autoplay");
        let s = pp.to_string();
        assert!(s.starts_with("accelerometer=(), camera=(self), display-capture=()"));
        assert!(!s.contains("autoplay"));
        assert!(PermissionsPolicy::new().is_empty());
        assert_eq!(
            PermissionsPolicy::new()
                .allow("fullscreen", ["https://*.example.com:8443"])
                .unwrap()
                .to_string(),
            "fullscreen=(\"https://*.example.com:8443\")"
        );
    }

    #[test]
    fn rejects() {
        for (feature, item) in [
            ("camera", "'self'"),
            ("camera", "'none'"),
            ("camera", "example.com"),
            ("camera", "https://a.example/path"),
            ("camera", "https://a.example\"), x=(*"),
            ("camera", "https://a.example\r\n"),
            ("camera", "https://"),
        ] {
            let err = PermissionsPolicy::new()
                .allow(feature, [item])
                .expect_err(item);
            assert_eq!(err.field(), "permissions_policy.camera", "{item}");
        }
        assert!(
            PermissionsPolicy::new()
                .allow("camera", ["*", "self"])
                .is_err()
        );
        assert_eq!(
            PermissionsPolicy::new()
                .deny("Camera=()")
                .unwrap_err()
                .field(),
            "permissions_policy"
        );
    }
}
