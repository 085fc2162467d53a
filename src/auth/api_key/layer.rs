//! The layer and its configuration.

use std::{fmt, sync::Arc};

use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use tower::Layer;

use super::{
    principal::parse_scopes,
    service::ApiKey,
    store::{ApiKeyStore, ApiKeys, Clock, SystemClock},
};
use crate::{error::ConfigError, net::TrustedProxies, problem::DefaultRejection};

/// The realm of `WWW-Authenticate` unless [`ApiKeyLayer::realm`] says otherwise.
pub const DEFAULT_REALM: &str = "api";

/// Requires an API key on every request; see the [module docs](super).
///
/// `K` is the key store ([`ApiKeys`] by default), `R` makes the rejection responses
/// ([`DefaultRejection`]: problem+json).
///
/// # Refusals while the body is still coming (HTTP/2)
///
/// A 401 or 403 is decided before anything reads the request body. If the body is not finished and
/// declares at most 64 KiB, the refusal first reads it to its end (at most 64 KiB, 1,024
/// frames and one second), throwing each chunk away, and answers after: the HTTP/2 stream then
/// ends cleanly instead of being reset while the client is still sending (which some clients
/// report as an error instead of the answer, and which, with the DATA the client had in
/// flight, uses up the connection's budget of resets in hyper/h2). A larger body is not read:
/// the answer goes at once. A request without a body pays nothing, and a client sending
/// `Expect: 100-continue` is answered at once. The wait needs a tokio runtime (without one,
/// the answer goes at once).
pub struct ApiKeyLayer<K = ApiKeys, R = DefaultRejection> {
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) rejection: R,
}

/// What every clone of the service shares.
pub(crate) struct Shared<K> {
    pub(crate) store: Arc<K>,
    pub(crate) header: Option<HeaderName>,
    pub(crate) bearer: bool,
    realm: Box<str>,
    pub(crate) required_scopes: Box<[Box<str>]>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) trusted_proxies: TrustedProxies,
    /// `WWW-Authenticate` when no usable key was presented.
    pub(crate) challenge: HeaderValue,
    /// `WWW-Authenticate` when a key was presented but is wrong, expired or malformed.
    pub(crate) challenge_invalid: HeaderValue,
    /// `WWW-Authenticate` for a missing scope.
    pub(crate) challenge_scope: HeaderValue,
}

impl<K> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            header: self.header.clone(),
            bearer: self.bearer,
            realm: self.realm.clone(),
            required_scopes: self.required_scopes.clone(),
            clock: self.clock.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            challenge: self.challenge.clone(),
            challenge_invalid: self.challenge_invalid.clone(),
            challenge_scope: self.challenge_scope.clone(),
        }
    }
}

impl<K> Shared<K> {
    fn rebuild_challenges(&mut self) -> Result<(), ConfigError> {
        let realm = &self.realm;
        let value = |s: String| {
            HeaderValue::try_from(s)
                .map_err(|_| ConfigError::invalid("realm", "not a valid header value"))
        };
        self.challenge = value(format!("Bearer realm=\"{realm}\""))?;
        self.challenge_invalid =
            value(format!("Bearer realm=\"{realm}\", error=\"invalid_token\""))?;
        let scopes = self.required_scopes.join(" ");
        self.challenge_scope = value(format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scopes}\""
        ))?;
        Ok(())
    }
}

impl<K: ApiKeyStore> ApiKeyLayer<K> {
    /// Requires a key known to `store` in `Authorization: Bearer <key>`, with realm
    /// [`DEFAULT_REALM`], no required scope and the system clock.
    pub fn new(store: K) -> Self {
        let mut shared = Shared {
            store: Arc::new(store),
            header: None,
            bearer: true,
            realm: DEFAULT_REALM.into(),
            required_scopes: Box::default(),
            clock: Arc::new(SystemClock),
            trusted_proxies: TrustedProxies::none(),
            challenge: HeaderValue::from_static("Bearer"),
            challenge_invalid: HeaderValue::from_static("Bearer"),
            challenge_scope: HeaderValue::from_static("Bearer"),
        };
        // The default realm and the empty scope list always make valid header values; keep the
        // placeholders above if that ever changed rather than panic.
        let _ = shared.rebuild_challenges();
        Self {
            shared: Arc::new(shared),
            rejection: DefaultRejection,
        }
    }
}

impl<K: ApiKeyStore, R> ApiKeyLayer<K, R> {
    fn map_shared(
        self,
        f: impl FnOnce(&mut Shared<K>) -> Result<(), ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        f(&mut shared)?;
        Ok(Self {
            shared: Arc::new(shared),
            rejection: self.rejection,
        })
    }

    /// Sets the realm sent in `WWW-Authenticate: Bearer realm="…"`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `realm`) when the realm is empty, longer than 64 characters, or
    /// has characters other than visible ASCII and spaces, or `"` or `\`.
    pub fn realm(self, realm: &str) -> Result<Self, ConfigError> {
        if realm.is_empty() || realm.len() > 64 {
            return Err(ConfigError::out_of_range(
                "realm",
                "a realm is 1 to 64 characters",
            ));
        }
        if !realm
            .bytes()
            .all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::invalid(
                "realm",
                "a realm may only contain visible ASCII characters and spaces, but not `\"` or `\\`",
            ));
        }
        self.map_shared(|s| {
            s.realm = realm.into();
            s.rebuild_challenges()
        })
    }

    /// Also reads the key from the header `name` (such as `x-api-key`), which wins over
    /// `Authorization` when both are present.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `header`) when `name` is not a valid header name, or is
    /// `authorization` (that one is read as `Bearer` already).
    pub fn header(self, name: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::invalid("header", "not a valid header name"))?;
        if name == AUTHORIZATION {
            return Err(ConfigError::invalid(
                "header",
                "`authorization` is read as `Bearer` already",
            ));
        }
        self.map_shared(|s| {
            s.header = Some(name);
            Ok(())
        })
    }

    /// Whether `Authorization: Bearer` is read (on by default). Turn it off to accept keys only
    /// in the header set with [`ApiKeyLayer::header`]; `Authorization` is then ignored.
    #[must_use]
    pub fn accept_bearer(self, accept: bool) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.bearer = accept;
        Self {
            shared: Arc::new(shared),
            rejection: self.rejection,
        }
    }

    /// Requires every one of `scopes` from the principal; a valid key without them is answered
    /// with 403 and `error="insufficient_scope"`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `scopes[i]`) when a scope is not an RFC 6749 scope token.
    pub fn require_scopes<I, S>(self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let scopes = parse_scopes(scopes).map_err(|e| e.within("require"))?;
        self.map_shared(|s| {
            s.required_scopes = scopes;
            s.rebuild_challenges()
        })
    }

    /// Decides expiry with `clock` instead of [`SystemTime::now`](std::time::SystemTime::now).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.clock = Arc::new(clock);
        Self {
            shared: Arc::new(shared),
            rejection: self.rejection,
        }
    }

    /// The proxies whose forwarding headers are believed for the client address in the audit
    /// event of a failed attempt (none by default: the TCP peer is reported).
    #[must_use]
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.trusted_proxies = proxies;
        Self {
            shared: Arc::new(shared),
            rejection: self.rejection,
        }
    }

    /// Makes rejection responses with `rejection` instead of problem+json. The response must
    /// keep the `WWW-Authenticate` header of [`Problem::headers`](crate::problem::Problem::headers).
    pub fn with_rejection<R2>(self, rejection: R2) -> ApiKeyLayer<K, R2> {
        ApiKeyLayer {
            shared: self.shared,
            rejection,
        }
    }
}

impl<S, K, R: Clone> Layer<S> for ApiKeyLayer<K, R> {
    type Service = ApiKey<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey {
            inner,
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<K, R: Clone> Clone for ApiKeyLayer<K, R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<K, R> fmt::Debug for ApiKeyLayer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<K> fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("header", &self.header)
            .field("bearer", &self.bearer)
            .field("realm", &self.realm)
            .field("required_scopes", &self.required_scopes)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}
