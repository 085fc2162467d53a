//! Typed causes of a refused signature and of a failed signing.

use std::{fmt, sync::Arc};

use http::StatusCode;

/// Why a request signature (RFC 9421) or its `Content-Digest` was refused.
///
/// Inserted into the extensions of the rejection response by
/// [`VerifySignatureLayer`](super::VerifySignatureLayer) and logged at WARN; the client only sees a
/// generic 401. Never carries a secret or a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureError {
    kind: SignatureErrorKind,
    key_id: Option<Arc<str>>,
}

/// What went wrong, for [`SignatureError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureErrorKind {
    /// No `Signature-Input`/`Signature` pair (or none with the label the policy asks for).
    MissingSignature,
    /// `Signature-Input` is not a valid structured field or not shaped as RFC 9421 says.
    MalformedSignatureInput,
    /// `Signature` is not a valid structured field, or a signature is not a byte sequence.
    MalformedSignature,
    /// The same label appears twice in `Signature-Input` or `Signature`.
    DuplicateLabel,
    /// A component is listed twice in one signature.
    DuplicateComponent,
    /// A component or component parameter this verifier does not support.
    UnsupportedComponent,
    /// A covered component is absent from the request (e.g. a header that is not there).
    ComponentUnavailable,
    /// A component the policy requires is not covered by the signature.
    RequiredComponentNotCovered,
    /// The request has a body and `content-digest` is not covered (or the header is missing).
    MissingDigest,
    /// `Content-Digest` is malformed.
    MalformedDigest,
    /// `Content-Digest` has no algorithm this verifier accepts (`sha-256`, `sha-512`).
    UnsupportedDigest,
    /// `Content-Digest` does not match the body.
    DigestMismatch,
    /// No `keyid`, or a key id the key ring does not know.
    UnknownKey,
    /// The key is outside its validity window or past its rotation grace period.
    KeyNotValid,
    /// The `alg` parameter names another algorithm than the key's.
    AlgorithmMismatch,
    /// No `created` parameter, and the policy requires one.
    MissingCreated,
    /// `created` is older than the maximum age.
    TooOld,
    /// `created` is in the future beyond the allowed clock skew.
    FromTheFuture,
    /// `expires` has passed.
    Expired,
    /// No `nonce`, and the policy requires one.
    MissingNonce,
    /// The nonce was seen before within the window.
    Replayed,
    /// The `tag` parameter is not the one the policy requires.
    TagMismatch,
    /// The signature does not match (tampered request or wrong secret).
    InvalidSignature,
    /// The body is larger than the verifier's limit.
    BodyTooLarge,
    /// The body could not be read.
    BodyError,
    /// The replay store could not answer; the request is refused (fail closed).
    ReplayStoreUnavailable,
}

impl SignatureErrorKind {
    /// A stable snake_case name, used in audit logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignatureInput => "malformed_signature_input",
            Self::MalformedSignature => "malformed_signature",
            Self::DuplicateLabel => "duplicate_label",
            Self::DuplicateComponent => "duplicate_component",
            Self::UnsupportedComponent => "unsupported_component",
            Self::ComponentUnavailable => "component_unavailable",
            Self::RequiredComponentNotCovered => "required_component_not_covered",
            Self::MissingDigest => "missing_digest",
            Self::MalformedDigest => "malformed_digest",
            Self::UnsupportedDigest => "unsupported_digest",
            Self::DigestMismatch => "digest_mismatch",
            Self::UnknownKey => "unknown_key",
            Self::KeyNotValid => "key_not_valid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::MissingCreated => "missing_created",
            Self::TooOld => "too_old",
            Self::FromTheFuture => "from_the_future",
            Self::Expired => "expired",
            Self::MissingNonce => "missing_nonce",
            Self::Replayed => "replayed",
            Self::TagMismatch => "tag_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyError => "body_error",
            Self::ReplayStoreUnavailable => "replay_store_unavailable",
        }
    }

    /// The status the verify layer answers with: 413 for a body over the limit, 400 for an
    /// unreadable body, 503 when the replay store is down, 401 otherwise.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyError => StatusCode::BAD_REQUEST,
            Self::ReplayStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl SignatureError {
    pub(crate) const fn new(kind: SignatureErrorKind) -> Self {
        Self { kind, key_id: None }
    }

    pub(crate) fn with_key_id(mut self, key_id: Arc<str>) -> Self {
        self.key_id = Some(key_id);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> SignatureErrorKind {
        self.kind
    }

    /// The key id the signature named, once it was read: for an unknown key, the id as
    /// claimed (at most 64 characters).
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }
}

impl fmt::Debug for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureError")
            .field("kind", &self.kind)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signature refused: {}", self.kind.as_str())
    }
}

impl std::error::Error for SignatureError {}

/// Why [`SignRequestLayer`](super::SignRequestLayer) could not sign a request.
///
/// Returned boxed in the layer's `BoxError`; find it with `downcast_ref::<SignError>()`.
#[derive(Debug)]
pub struct SignError {
    kind: SignErrorKind,
    source: Option<tower::BoxError>,
}

/// What went wrong, for [`SignError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignErrorKind {
    /// The body is larger than the signer's buffer limit.
    BodyTooLarge,
    /// The body could not be read.
    Body,
    /// A covered component is absent from the request (e.g. a header that is not there).
    ComponentUnavailable,
    /// The request cannot be signed as configured (e.g. no authority to derive `@authority`).
    InvalidRequest,
}

impl SignError {
    pub(crate) fn new(kind: SignErrorKind) -> Self {
        Self { kind, source: None }
    }

    pub(crate) fn with_source(kind: SignErrorKind, source: tower::BoxError) -> Self {
        Self {
            kind,
            source: Some(source),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> SignErrorKind {
        self.kind
    }
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SignErrorKind::BodyTooLarge => f.write_str("request body too large to sign"),
            SignErrorKind::Body => f.write_str("request body could not be read for signing"),
            SignErrorKind::ComponentUnavailable => {
                f.write_str("a component to sign is absent from the request")
            }
            SignErrorKind::InvalidRequest => f.write_str("the request cannot be signed"),
        }
    }
}

impl std::error::Error for SignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
