use std::{fmt, sync::Arc};

use http::HeaderName;
use tower::Layer;

use crate::net::TrustedProxies;

use super::{
    DefaultMakeRequestId, DefaultValidateRequestId, MakeRequestId, SetRequestId, ValidateRequestId,
    X_REQUEST_ID,
};

/// Gives every request an id, and every response the same id: see the [module docs](super).
///
/// Made with [`SetRequestIdLayer::new`]; the builders change the header, the generator, the
/// validator, whom to trust and whether to read `traceparent`.
pub struct SetRequestIdLayer<M = DefaultMakeRequestId, V = DefaultValidateRequestId> {
    pub(crate) config: Config<M, V>,
}

/// Whose incoming ids are considered.
#[derive(Clone, Debug)]
pub(crate) enum Trust {
    Anyone,
    Proxies(TrustedProxies),
    Nobody,
}

#[derive(Clone)]
pub(crate) struct Config<M, V> {
    pub(crate) header: HeaderName,
    pub(crate) make: M,
    pub(crate) validate: V,
    pub(crate) trust: Trust,
    pub(crate) traceparent: bool,
}

impl SetRequestIdLayer {
    /// The defaults: header `x-request-id`; an incoming id is kept when it is 1 to 128
    /// characters of `[A-Za-z0-9._:-]`, from any peer; otherwise a UUID v7 is made;
    /// `traceparent` is not read.
    pub const fn new() -> Self {
        Self {
            config: Config {
                header: X_REQUEST_ID,
                make: DefaultMakeRequestId::new(),
                validate: DefaultValidateRequestId::new(),
                trust: Trust::Anyone,
                traceparent: false,
            },
        }
    }
}

impl Default for SetRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M, V> SetRequestIdLayer<M, V> {
    /// Reads and writes the id in `header` instead of `x-request-id` (on the request, and on the
    /// response).
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.config.header = header;
        self
    }

    /// Like [`header`](Self::header), from configuration text.
    ///
    /// # Errors
    ///
    /// [`ConfigError`](crate::ConfigError) when `name` is not a header name, or names a header
    /// with a meaning of its own (`host`, `content-length`, `authorization`, `traceparent`, ...).
    pub fn try_header(self, name: &str) -> Result<Self, crate::ConfigError> {
        Ok(self.header(super::parse_header(name)?))
    }

    /// Makes ids with `make` (a [`MakeRequestId`] or a `Fn() -> RequestId`) instead of UUID v7.
    #[must_use]
    pub fn with_make_request_id<M2>(self, make: M2) -> SetRequestIdLayer<M2, V>
    where
        M2: MakeRequestId,
    {
        let Config {
            header,
            validate,
            trust,
            traceparent,
            ..
        } = self.config;
        SetRequestIdLayer {
            config: Config {
                header,
                make,
                validate,
                trust,
                traceparent,
            },
        }
    }

    /// Keeps an incoming id only when `validate` (a [`ValidateRequestId`] or a
    /// `Fn(&str) -> bool`) says so, instead of the default rule. Whatever it says, an id is
    /// never kept unless it is 1 to 128 visible ASCII characters.
    #[must_use]
    pub fn with_validate_request_id<V2>(self, validate: V2) -> SetRequestIdLayer<M, V2>
    where
        V2: ValidateRequestId,
    {
        let Config {
            header,
            make,
            trust,
            traceparent,
            ..
        } = self.config;
        SetRequestIdLayer {
            config: Config {
                header,
                make,
                validate,
                trust,
                traceparent,
            },
        }
    }

    /// Considers incoming ids (and `traceparent`) only from a TCP peer in `proxies` (read with
    /// [`crate::net::peer_addr`]); requests from any other peer, or whose peer is unknown, always
    /// get a fresh id.
    ///
    /// Use this when a load balancer sets the id: clients then cannot choose the id that shows
    /// up in your logs.
    #[must_use]
    pub fn trust_incoming_from(mut self, proxies: TrustedProxies) -> Self {
        self.config.trust = Trust::Proxies(proxies);
        self
    }

    /// Never keeps an incoming id (nor `traceparent`): every request gets a fresh one.
    #[must_use]
    pub fn ignore_incoming(mut self) -> Self {
        self.config.trust = Trust::Nobody;
        self
    }

    /// When the request has no acceptable id header, takes the trace id (32 lowercase hex
    /// digits) of a valid W3C `traceparent` header as the id, so that logs and traces share a
    /// key. Off by default.
    #[must_use]
    pub fn use_traceparent(mut self, yes: bool) -> Self {
        self.config.traceparent = yes;
        self
    }
}

impl<S, M, V> Layer<S> for SetRequestIdLayer<M, V>
where
    M: Clone,
    V: Clone,
{
    type Service = SetRequestId<S, M, V>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

impl<M: Clone, V: Clone> Clone for SetRequestIdLayer<M, V> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<M, V> fmt::Debug for SetRequestIdLayer<M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetRequestIdLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<M, V> fmt::Debug for Config<M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("header", &self.header)
            .field("make", &std::any::type_name::<M>())
            .field("validate", &std::any::type_name::<V>())
            .field("trust", &self.trust)
            .field("traceparent", &self.traceparent)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigErrorKind;

    #[test]
    fn header_from_config() {
        let layer = SetRequestIdLayer::new()
            .try_header(" X-Correlation-Id ")
            .unwrap();
        assert_eq!(layer.config.header, "x-correlation-id");
        let err = SetRequestIdLayer::new()
            .try_header("bad header")
            .unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        assert_eq!(err.field(), "request_id.header");
        let err = SetRequestIdLayer::new().try_header("Host").unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Unsafe);
        assert!(
            super::super::ForwardRequestIdLayer::new()
                .try_header("content-length")
                .is_err()
        );
    }

    #[test]
    fn debug_names_the_settings() {
        let layer = SetRequestIdLayer::new()
            .use_traceparent(true)
            .trust_incoming_from(TrustedProxies::loopback());
        let debug = format!("{layer:?}");
        assert!(debug.contains("x-request-id"), "{debug}");
        assert!(debug.contains("127.0.0.0/8"), "{debug}");
        assert!(debug.contains("traceparent: true"), "{debug}");
    }
}
