//! The typed cause of a refused request.

use std::fmt;

use super::principal::PrincipalId;

/// Why the API-key layer refused a request: inserted in the extensions of the rejection
/// response and reported in the audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRejection {
    kind: ApiKeyRejectionKind,
    principal: Option<PrincipalId>,
}

/// What kind of [`ApiKeyRejection`] this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiKeyRejectionKind {
    /// No key was presented (401).
    Missing,
    /// A key was presented in an unusable form: another `Authorization` scheme, an empty or
    /// over-long key, characters other than visible ASCII, or the header repeated (401).
    Malformed,
    /// The key is not known (401).
    Unknown,
    /// The key or its principal is past its expiry (401).
    Expired,
    /// The key is valid but its principal lacks a required scope (403).
    InsufficientScope,
}

impl ApiKeyRejectionKind {
    /// A stable lowercase name (`"missing"`, `"malformed"`, ...), as in the audit event.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

impl ApiKeyRejection {
    pub(crate) fn new(kind: ApiKeyRejectionKind, principal: Option<PrincipalId>) -> Self {
        Self { kind, principal }
    }

    /// What kind of rejection this is.
    pub fn kind(&self) -> ApiKeyRejectionKind {
        self.kind
    }

    /// The principal of the presented key, when the key was known (expired, insufficient
    /// scope).
    pub fn principal(&self) -> Option<&PrincipalId> {
        self.principal.as_ref()
    }
}

impl fmt::Display for ApiKeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ApiKeyRejectionKind::Missing => "no API key was presented",
            ApiKeyRejectionKind::Malformed => "the API key is malformed",
            ApiKeyRejectionKind::Unknown => "the API key is not known",
            ApiKeyRejectionKind::Expired => "the API key has expired",
            ApiKeyRejectionKind::InsufficientScope => "the API key lacks a required scope",
        };
        f.write_str(what)?;
        if let Some(p) = &self.principal {
            write!(f, " (principal `{p}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiKeyRejection {}
