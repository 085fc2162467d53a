//! What a verifier accepts, and the synchronous part of verification.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use hmac::Mac;
use http::{HeaderMap, HeaderName, Method, Uri};

use crate::{
    error::ConfigError,
    net::Scheme,
    signing::{
        base::{Target, write_base},
        digest::ExpectedDigests,
        error::{SignatureError, SignatureErrorKind},
        key::KeyRing,
        parse::{Component, InputRef, Signatures, parse_inputs},
    },
};

/// The default body limit of the verify layer: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Whether a signature must carry a `nonce`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NonceRequirement {
    /// A nonce is required and checked against the replay store (the default).
    #[default]
    Required,
    /// A nonce is checked when present; signatures without one are replayable within the window.
    Optional,
}

/// What [`VerifySignatureLayer`](super::VerifySignatureLayer) accepts.
///
/// Defaults: components `@method`, `@authority`, `@target-uri` (and `content-digest` whenever
/// the request has a body, always), `created` required and at most 300 s old, 60 s of clock
/// skew for a `created` in the future, `expires` honoured, nonce required, any label, body
/// limit 1 MiB, `http` assumed when the request URI has no scheme.
///
/// A required `content-digest` (default or listed) applies to requests with content; see
/// [`required_components`](Self::required_components).
#[derive(Clone)]
pub struct VerifyPolicy {
    pub(crate) required: Vec<String>,
    pub(crate) max_age: u64,
    pub(crate) skew: u64,
    pub(crate) nonce: NonceRequirement,
    pub(crate) require_created: bool,
    pub(crate) tag: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) body_limit: usize,
    pub(crate) scheme: Scheme,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl VerifyPolicy {
    /// The default policy.
    pub fn new() -> Self {
        Self {
            required: ["\"@method\"", "\"@authority\"", "\"@target-uri\""]
                .map(String::from)
                .to_vec(),
            max_age: 300,
            skew: 60,
            nonce: NonceRequirement::Required,
            require_created: true,
            tag: None,
            label: None,
            body_limit: DEFAULT_BODY_LIMIT,
            scheme: Scheme::Http,
        }
    }

    /// Replaces the required components (`"@method"`, `"content-type"`,
    /// `"\"@query-param\";name=\"id\""`, ...). `content-digest` stays required for requests with
    /// a body whatever this says.
    ///
    /// A required `content-digest` applies to requests with content only: a non-zero
    /// `Content-Length`, or a body not known to be empty (chunked, HTTP/2 data). A bodiless
    /// `GET`, `HEAD`, `DELETE` or `OPTIONS` need not cover it (most RFC 9421 signers, this
    /// crate's [`SignRequestLayer`](crate::signing::SignRequestLayer) included, add no
    /// `Content-Digest` without a body). A signature that does cover `content-digest` is
    /// checked against the body whatever its length, so a body stripped from a signed request,
    /// or added to one signed without it, is refused.
    ///
    /// # Errors
    ///
    /// When an identifier does not parse or is not supported.
    pub fn required_components<I, S>(mut self, components: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.required = components
            .into_iter()
            .map(|c| Component::parse(c.as_ref()).map(|c| c.identifier().to_owned()))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The maximum age of `created` (default 300 s).
    #[must_use]
    pub const fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self
    }

    /// How far in the future `created` may be (default 60 s).
    #[must_use]
    pub const fn clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew.as_secs();
        self
    }

    /// Whether a nonce is required (default [`NonceRequirement::Required`]).
    #[must_use]
    pub const fn nonce(mut self, nonce: NonceRequirement) -> Self {
        self.nonce = nonce;
        self
    }

    /// Whether `created` is required (default `true`). Without `created` and `expires` a
    /// signature has no age: turn this off only for published test vectors.
    #[must_use]
    pub const fn require_created(mut self, required: bool) -> Self {
        self.require_created = required;
        self
    }

    /// Only accept signatures whose `tag` parameter is `tag` (application binding, RFC 9421 §2.3).
    #[must_use]
    pub fn required_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Only look at the signature with this label (default: the first acceptable one).
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The most body bytes buffered to check `Content-Digest` (default 1 MiB); larger bodies get 413.
    #[must_use]
    pub const fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The scheme of requests whose URI has none (origin-form, the server case); default `http`.
    /// Set `Https` behind a TLS-terminating proxy so `@scheme`/`@target-uri` match the client's.
    #[must_use]
    pub const fn assume_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl fmt::Debug for VerifyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyPolicy")
            .field("required", &self.required)
            .field("max_age_secs", &self.max_age)
            .field("skew_secs", &self.skew)
            .field("nonce", &self.nonce)
            .field("require_created", &self.require_created)
            .field("tag", &self.tag)
            .field("label", &self.label)
            .field("body_limit", &self.body_limit)
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// A verified signature, inserted in the request extensions for the inner service (the rate
/// limiter keys on [`key_id`](VerifiedSignature::key_id)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    key_id: Arc<str>,
    label: String,
    created: Option<i64>,
    expires: Option<i64>,
    nonce: Option<String>,
    tag: Option<String>,
    signature_params: String,
}

impl VerifiedSignature {
    /// The id of the key that verified the signature.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signature's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `created`, if present.
    pub fn created(&self) -> Option<i64> {
        self.created
    }

    /// `expires`, if present.
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }

    /// `nonce`, if present.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// `tag`, if present.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The `@signature-params` value: the covered components and all parameters, e.g.
    /// `("@method" "@authority");created=1700000000;keyid="k"`.
    pub fn signature_params(&self) -> &str {
        &self.signature_params
    }
}

/// The outcome of the header part of verification.
pub(crate) struct Checked {
    pub(crate) verified: VerifiedSignature,
    pub(crate) digest: Option<ExpectedDigests>,
    pub(crate) replay: Option<(String, Duration)>,
}

impl Checked {
    pub(crate) fn verified_key_id(&self) -> Arc<str> {
        self.verified.key_id.clone()
    }
}

/// The synchronous verifier: everything but the body digest and the replay store.
pub(crate) struct Verifier {
    pub(crate) ring: KeyRing,
    pub(crate) policy: VerifyPolicy,
}

impl Verifier {
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        has_body: bool,
        now: u64,
    ) -> Result<Checked, SignatureError> {
        let input_value = combined(headers, &SIGNATURE_INPUT)
            .ok_or_else(|| SignatureError::new(SignatureErrorKind::MissingSignature))?;
        let sig_value = combined(headers, &SIGNATURE)
            .ok_or_else(|| SignatureError::new(SignatureErrorKind::MissingSignature))?;
        let mut slow = None;
        let inputs = parse_inputs(&input_value, &mut slow)?;
        let signatures = Signatures::parse(&sig_value)?;
        let target = Target {
            method,
            uri,
            headers,
            default_scheme: match self.policy.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
        };
        let mut first_err = None;
        for input in inputs {
            if self
                .policy
                .label
                .as_deref()
                .is_some_and(|l| l != input.label)
            {
                continue;
            }
            let Some(sig) = signatures.get(input.label) else {
                continue;
            };
            match self.check_one(&target, input, sig, has_body, now) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(SignatureError::new(SignatureErrorKind::MissingSignature)))
    }

    fn check_one(
        &self,
        target: &Target<'_>,
        input: InputRef<'_>,
        signature: &[u8],
        has_body: bool,
        now: u64,
    ) -> Result<Checked, SignatureError> {
        let err = SignatureError::new;
        let key_id = input
            .keyid
            .as_deref()
            .ok_or_else(|| err(SignatureErrorKind::UnknownKey))?;
        let key = self.ring.verifying_key(key_id, now)?;
        let with_key = |e: SignatureError| e.with_key_id(key.shared_id());
        let fail = |k| with_key(err(k));

        if let Some(alg) = &input.alg
            && alg != key.algorithm().as_str()
        {
            return Err(fail(SignatureErrorKind::AlgorithmMismatch));
        }
        for required in &self.policy.required {
            // A required `content-digest` applies to requests with content: a bodiless GET has
            // nothing to digest (third-party RFC 9421 signers do not digest it). A request with
            // content must still cover it (below), and a covered digest is always checked
            // against the body, so stripping the body of a signed POST fails the digest.
            if !has_body && required == CONTENT_DIGEST_ID {
                continue;
            }
            if !input.covers(required) {
                return Err(fail(SignatureErrorKind::RequiredComponentNotCovered));
            }
        }
        let covers_digest = input.covers(CONTENT_DIGEST_ID);
        // Looked up once: checked for presence now, parsed once the MAC is verified.
        let digest_value = if covers_digest {
            combined(target.headers, &CONTENT_DIGEST)
        } else {
            None
        };
        if (has_body && !covers_digest) || (covers_digest && digest_value.is_none()) {
            return Err(fail(SignatureErrorKind::MissingDigest));
        }
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        match input.created {
            Some(created) => {
                if created > now_i.saturating_add(self.policy.skew as i64) {
                    return Err(fail(SignatureErrorKind::FromTheFuture));
                }
                if now_i.saturating_sub(created) > self.policy.max_age as i64 {
                    return Err(fail(SignatureErrorKind::TooOld));
                }
            }
            None if self.policy.require_created => {
                return Err(fail(SignatureErrorKind::MissingCreated));
            }
            None => {}
        }
        if let Some(expires) = input.expires
            && now_i >= expires
        {
            return Err(fail(SignatureErrorKind::Expired));
        }
        match (&input.nonce, self.policy.nonce) {
            (None, NonceRequirement::Required) => {
                return Err(fail(SignatureErrorKind::MissingNonce));
            }
            (Some(n), _) if n.is_empty() || n.len() > 256 => {
                return Err(fail(SignatureErrorKind::MalformedSignatureInput));
            }
            _ => {}
        }
        if let Some(tag) = &self.policy.tag
            && input.tag.as_deref() != Some(tag.as_str())
        {
            return Err(fail(SignatureErrorKind::TagMismatch));
        }

        // The base goes straight into the pre-keyed MAC: no buffer, no copy.
        let mut mac = key.mac();
        write_base(target, &input.components, input.params_line, &mut mac).map_err(fail)?;
        // Constant-time comparison (`subtle` underneath).
        mac.verify_slice(signature)
            .map_err(|_| fail(SignatureErrorKind::InvalidSignature))?;

        let digest = match &digest_value {
            Some(value) => Some(ExpectedDigests::parse(value).map_err(with_key)?),
            None => None,
        };
        let replay = input.nonce.as_ref().map(|n| {
            let ttl = nonce_ttl(&self.policy, input.created, input.expires, now_i);
            // `sig:<key id>:<nonce>`, built without the formatting machinery.
            let mut k = String::with_capacity(5 + key.id().len() + n.len());
            k.push_str("sig:");
            k.push_str(key.id());
            k.push(':');
            k.push_str(n);
            (k, ttl)
        });
        Ok(Checked {
            verified: VerifiedSignature {
                key_id: key.shared_id(),
                label: input.label.to_owned(),
                created: input.created,
                expires: input.expires,
                nonce: input.nonce.map(Cow::into_owned),
                tag: input.tag.map(Cow::into_owned),
                signature_params: input.params_line.to_owned(),
            },
            digest,
            replay,
        })
    }
}

/// How long the nonce of a signature accepted at `now` is remembered: until the signature's
/// own acceptance window has closed, plus the clock skew.
///
/// The window closes at the end of the second `created + max_age` (the check compares whole
/// seconds: `now - created <= max_age` still holds during that second) or at `expires`,
/// whichever comes first. Counting from first use instead (`max_age + skew`) forgets the
/// nonce of a signature first used with `created` at `now + skew` up to a second before its
/// window closes, and it can be replayed then. The extra `skew` keeps the nonce while an
/// instance whose clock is up to `skew` behind this one's still accepts the signature (a
/// shared store); for a signature created now it is what was kept before (`max_age + skew`,
/// one second more). Without `created` or `expires` the signature never expires and its nonce
/// is kept for `max_age + skew` (published test vectors only: see
/// [`VerifyPolicy::require_created`]).
fn nonce_ttl(
    policy: &VerifyPolicy,
    created: Option<i64>,
    expires: Option<i64>,
    now: i64,
) -> Duration {
    let max_age = i64::try_from(policy.max_age).unwrap_or(i64::MAX);
    let by_age = created.map(|c| c.saturating_add(max_age).saturating_add(1));
    let closes = match (by_age, expires) {
        (Some(a), Some(e)) => Some(a.min(e)),
        (a, e) => a.or(e),
    };
    let secs = match closes {
        Some(end) => u64::try_from(end.saturating_sub(now))
            .unwrap_or(0)
            .saturating_add(policy.skew),
        None => policy.max_age.saturating_add(policy.skew),
    };
    Duration::from_secs(secs.max(1))
}

pub(crate) const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("signature");
pub(crate) const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// The component identifier of `content-digest`, as [`Component::identifier`] writes it.
const CONTENT_DIGEST_ID: &str = "\"content-digest\"";

/// All field lines of `name` joined with `", "` (borrowed when there is one), or `None`.
pub(crate) fn combined<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, [u8]>> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    let Some(second) = it.next() else {
        return Some(Cow::Borrowed(first.as_bytes()));
    };
    let mut out = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(it) {
        out.extend_from_slice(b", ");
        out.extend_from_slice(v.as_bytes());
    }
    Some(Cow::Owned(out))
}
