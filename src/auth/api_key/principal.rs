//! Who a key belongs to.

use std::{borrow::Borrow, fmt, sync::Arc, time::SystemTime};

use crate::error::ConfigError;

/// The longest principal id accepted, in bytes.
pub const MAX_PRINCIPAL_ID_LEN: usize = 128;

/// The longest scope accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;

/// The id of a [`Principal`]: 1 to 128 visible ASCII characters, safe to log and to use as a
/// rate-limit key (`Hash + Eq`, cheap to clone).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(Arc<str>);

impl PrincipalId {
    /// Validates an id.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `id`) when the id is empty, longer than
    /// [`MAX_PRINCIPAL_ID_LEN`] or has characters other than visible ASCII.
    pub fn new(id: &str) -> Result<Self, ConfigError> {
        if id.is_empty() || id.len() > MAX_PRINCIPAL_ID_LEN {
            return Err(ConfigError::out_of_range(
                "id",
                "a principal id is 1 to 128 characters",
            ));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                "id",
                "a principal id may only contain visible ASCII characters",
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for PrincipalId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PrincipalId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrincipalId").field(&&*self.0).finish()
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity an API key stands for: an id, scopes and an optional expiry.
///
/// The API-key layer puts the principal of an accepted key in the request extensions; handlers
/// read it with `req.extensions().get::<Principal>()` or axum's `Extension<Principal>`, and the
/// rate limiter can key on [`Principal::id`]. Cloning is a reference-count bump.
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

struct Inner {
    id: PrincipalId,
    scopes: Box<[Box<str>]>,
    expires_at: Option<SystemTime>,
}

impl Principal {
    /// A principal with no scopes that does not expire.
    pub fn new(id: PrincipalId) -> Self {
        Self(Arc::new(Inner {
            id,
            scopes: Box::default(),
            expires_at: None,
        }))
    }

    /// A principal with scopes and an optional expiry (after which all its keys are refused).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `scopes[i]`) when a scope is empty, longer than
    /// [`MAX_SCOPE_LEN`], or not an RFC 6749 scope token (visible ASCII except `"` and `\`).
    pub fn with_scopes<I, S>(
        id: PrincipalId,
        scopes: I,
        expires_at: Option<SystemTime>,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let scopes = parse_scopes(scopes)?;
        Ok(Self(Arc::new(Inner {
            id,
            scopes,
            expires_at,
        })))
    }

    /// The id.
    pub fn id(&self) -> &PrincipalId {
        &self.0.id
    }

    /// The scopes granted to this principal.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.scopes.iter().map(|s| &**s)
    }

    /// Whether this principal has `scope` (exact, case-sensitive match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| &**s == scope)
    }

    /// When this principal stops being accepted, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.id == other.0.id
                && self.0.scopes == other.0.scopes
                && self.0.expires_at == other.0.expires_at)
    }
}

impl Eq for Principal {}

/// Hashes the id only (equal principals have equal ids), so a principal can key a rate limit:
/// `ExtensionKey::<Principal>::new()` in [`crate::rate_limit`] gives every principal its own
/// bucket, shared by all of its keys.
impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.0.id)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

pub(crate) fn parse_scopes<I, S>(scopes: I) -> Result<Box<[Box<str>]>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<Box<str>> = Vec::new();
    for (i, scope) in scopes.into_iter().enumerate() {
        let scope = scope.as_ref();
        if scope.is_empty() || scope.len() > MAX_SCOPE_LEN {
            return Err(ConfigError::out_of_range(
                format!("scopes[{i}]"),
                "a scope is 1 to 128 characters",
            ));
        }
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if !scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::invalid(
                format!("scopes[{i}]"),
                "a scope may only contain visible ASCII characters other than `\"` and `\\`",
            ));
        }
        if !out.iter().any(|s| &**s == scope) {
            out.push(scope.into());
        }
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(PrincipalId::new("svc-billing").is_ok());
        assert!(PrincipalId::new("").is_err());
        assert!(PrincipalId::new("a b").is_err());
        assert!(PrincipalId::new("a\nb").is_err());
        assert!(PrincipalId::new("é").is_err());
        assert!(PrincipalId::new(&"a".repeat(129)).is_err());
        assert!(PrincipalId::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn scopes_are_validated_and_deduplicated() {
        let id = PrincipalId::new("p").unwrap();
        let p = Principal::with_scopes(id.clone(), ["read", "write", "read"], None).unwrap();
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert!(p.has_scope("write"));
        assert!(!p.has_scope("Write"));
        let err = Principal::with_scopes(id.clone(), ["ok", "bad scope"], None).unwrap_err();
        assert_eq!(err.field(), "scopes[1]");
        assert!(Principal::with_scopes(id.clone(), ["a\"b"], None).is_err());
        assert!(Principal::with_scopes(id, [""], None).is_err());
    }

    #[test]
    fn ids_hash_like_strings() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(PrincipalId::new("a").unwrap());
        assert!(set.contains("a"));
        assert!(set.contains(&PrincipalId::new("a").unwrap()));
    }
}
