//! [`SignRequestLayer`] and the signer it configures.

use std::{fmt, sync::Arc, time::Duration};

use base64::{
    Engine as _, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD,
};
use hmac::Mac;
use http::{HeaderName, HeaderValue, request::Parts};
use tower::Layer;

use super::service::SignRequest;
use crate::{
    error::ConfigError,
    net::Scheme,
    signing::{
        base::{Target, write_base},
        clock::{Clock, SharedClock},
        digest::DigestAlgorithm,
        error::{SignError, SignErrorKind},
        key::KeyRing,
        parse::{Component, ComponentKind},
        verify::DEFAULT_BODY_LIMIT,
    },
};

pub(crate) struct Signer {
    ring: KeyRing,
    components: Vec<Component>,
    digest_component: Component,
    /// `content-digest` is among `components`: digested even when the body is empty.
    pub(crate) always_digest: bool,
    label: String,
    tag: Option<String>,
    expires_in: Option<u64>,
    pub(crate) body_limit: usize,
    pub(crate) digest: DigestAlgorithm,
    clock: SharedClock,
    scheme: Scheme,
}

impl Signer {
    /// Adds `Content-Digest` (when `digest` is given), `Signature-Input` and `Signature`.
    pub(crate) fn sign(
        &self,
        parts: &mut Parts,
        digest: Option<HeaderValue>,
    ) -> Result<(), SignError> {
        let mut components = self.components.clone();
        if let Some(d) = digest {
            parts
                .headers
                .insert(HeaderName::from_static("content-digest"), d);
            if !components
                .iter()
                .any(|c| c.identifier() == self.digest_component.identifier())
            {
                components.push(self.digest_component.clone());
            }
        }
        let key = self.ring.signing_key();
        let now = self.clock.now();
        let mut params = String::with_capacity(192);
        params.push('(');
        for (i, c) in components.iter().enumerate() {
            if i > 0 {
                params.push(' ');
            }
            params.push_str(c.identifier());
        }
        params.push_str(");created=");
        params.push_str(&now.to_string());
        if let Some(exp) = self.expires_in {
            params.push_str(";expires=");
            params.push_str(&now.saturating_add(exp).to_string());
        }
        params.push_str(";nonce=\"");
        params.push_str(&nonce());
        params.push_str("\";keyid=\"");
        params.push_str(key.id());
        params.push_str("\";alg=\"");
        params.push_str(key.algorithm().as_str());
        params.push('"');
        if let Some(tag) = &self.tag {
            params.push_str(";tag=\"");
            params.push_str(tag);
            params.push('"');
        }
        let target = Target {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            default_scheme: match self.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
        };
        // The base goes straight into the pre-keyed MAC: no buffer, no copy.
        let mut mac = key.mac();
        write_base(&target, &components, &params, &mut mac)
            .map_err(|_| SignError::new(SignErrorKind::ComponentUnavailable))?;
        let tag = mac.finalize().into_bytes();
        let mut sig = String::with_capacity(self.label.len() + 48);
        sig.push_str(&self.label);
        sig.push_str("=:");
        STANDARD.encode_string(tag.as_slice(), &mut sig);
        sig.push(':');
        let input = format!("{}={params}", self.label);
        let (Ok(sig), Ok(input)) = (HeaderValue::try_from(sig), HeaderValue::try_from(input))
        else {
            return Err(SignError::new(SignErrorKind::InvalidRequest));
        };
        parts
            .headers
            .insert(HeaderName::from_static("signature-input"), input);
        parts
            .headers
            .insert(HeaderName::from_static("signature"), sig);
        Ok(())
    }
}

/// A fresh nonce: 16 bytes from the OS CSPRNG, base64url.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The thread RNG is a CSPRNG seeded from the OS; used only if the OS source fails.
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs outgoing requests with RFC 9421 `hmac-sha256`, for any client
/// `Service<Request<BufferedBody>>` (hyper-util's `Client`, a `reqwest`-like tower stack, ...).
///
/// Each call buffers the body (up to the limit, default 1 MiB), adds `Content-Digest` when there
/// is a body (a bodiless `GET` gets none: the verifier requires `content-digest` only of
/// requests with content), then `Signature-Input` and `Signature` with a fresh `created`, a random `nonce`,
/// the signing key's `keyid` and `alg`. Covered by default: `@method`, `@authority`,
/// `@target-uri` (and `content-digest` with a body). Errors are [`SignError`]s in a
/// `tower::BoxError`; the inner service's errors pass through boxed.
#[derive(Clone)]
pub struct SignRequestLayer {
    pub(crate) signer: Arc<Signer>,
}

impl SignRequestLayer {
    /// Signs with the signing key of `ring` (read on every request, so rotation applies at once).
    pub fn new(ring: KeyRing) -> Self {
        let components = vec![
            Component::fixed("@method", ComponentKind::Method),
            Component::fixed("@authority", ComponentKind::Authority),
            Component::fixed("@target-uri", ComponentKind::TargetUri),
        ];
        Self {
            signer: Arc::new(Signer {
                ring,
                components,
                digest_component: Component::fixed(
                    "content-digest",
                    ComponentKind::Field {
                        sf: false,
                        key: None,
                    },
                ),
                always_digest: false,
                label: "sig1".to_owned(),
                tag: None,
                expires_in: None,
                body_limit: DEFAULT_BODY_LIMIT,
                digest: DigestAlgorithm::Sha256,
                clock: SharedClock::default(),
                scheme: Scheme::Http,
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Signer)) -> Self {
        let mut signer = Arc::try_unwrap(self.signer).unwrap_or_else(|arc| Signer {
            ring: arc.ring.clone(),
            components: arc.components.clone(),
            digest_component: arc.digest_component.clone(),
            always_digest: arc.always_digest,
            label: arc.label.clone(),
            tag: arc.tag.clone(),
            expires_in: arc.expires_in,
            body_limit: arc.body_limit,
            digest: arc.digest,
            clock: arc.clock.clone(),
            scheme: arc.scheme,
        });
        f(&mut signer);
        Self {
            signer: Arc::new(signer),
        }
    }

    /// Covers these components (plus `content-digest` whenever there is a body). Listing
    /// `content-digest` covers it on every request: a bodiless one then carries the digest of
    /// the empty body, for verifiers that require it whatever the method.
    ///
    /// # Errors
    ///
    /// When an identifier does not parse or is not supported.
    pub fn with_components<I, S>(self, components: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = components
            .into_iter()
            .map(|c| Component::parse(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in parsed.iter().enumerate() {
            if parsed[..i].iter().any(|o| o.identifier() == c.identifier()) {
                return Err(ConfigError::invalid(
                    "signing.components",
                    "a component is listed twice",
                ));
            }
        }
        Ok(self.edit(|s| {
            s.always_digest = parsed
                .iter()
                .any(|c| c.identifier() == s.digest_component.identifier());
            s.components = parsed;
        }))
    }

    /// The signature label (default `sig1`).
    ///
    /// # Errors
    ///
    /// When `label` is not a structured-field key (lowercase letters, digits, `_-.*`).
    pub fn with_label(self, label: &str) -> Result<Self, ConfigError> {
        let ok = label
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
            && label.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b'*')
            })
            && label.len() <= 64;
        if !ok {
            return Err(ConfigError::invalid(
                "signing.label",
                "not a structured-field key",
            ));
        }
        let label = label.to_owned();
        Ok(self.edit(|s| s.label = label))
    }

    /// Adds a `tag` parameter (the verifier may require it).
    ///
    /// # Errors
    ///
    /// When `tag` is empty, too long or not visible ASCII without `"` and `\`.
    pub fn with_tag(self, tag: &str) -> Result<Self, ConfigError> {
        crate::signing::key::validate_key_id(tag).map_err(|_| {
            ConfigError::invalid("signing.tag", "must be visible ASCII without `\"` or `\\`")
        })?;
        let tag = tag.to_owned();
        Ok(self.edit(|s| s.tag = Some(tag)))
    }

    /// Adds `expires` = `created` + `ttl`.
    #[must_use]
    pub fn with_expires_in(self, ttl: Duration) -> Self {
        self.edit(|s| s.expires_in = Some(ttl.as_secs()))
    }

    /// The most body bytes buffered (default 1 MiB); a larger body fails with
    /// [`SignErrorKind::BodyTooLarge`].
    #[must_use]
    pub fn with_body_limit(self, limit: usize) -> Self {
        self.edit(|s| s.body_limit = limit)
    }

    /// The `Content-Digest` algorithm (default `sha-256`).
    #[must_use]
    pub fn with_digest(self, alg: DigestAlgorithm) -> Self {
        self.edit(|s| s.digest = alg)
    }

    /// Reads `created` from `clock`.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock = SharedClock::new(clock);
        self.edit(|s| s.clock = clock)
    }

    /// The scheme used when a request URI has none (default `http`).
    #[must_use]
    pub fn assume_scheme(self, scheme: Scheme) -> Self {
        self.edit(|s| s.scheme = scheme)
    }
}

impl fmt::Debug for SignRequestLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignRequestLayer")
            .field("ring", &self.signer.ring)
            .field("components", &self.signer.components)
            .field("label", &self.signer.label)
            .field("body_limit", &self.signer.body_limit)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SignRequestLayer {
    type Service = SignRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignRequest {
            inner,
            signer: self.signer.clone(),
        }
    }
}
