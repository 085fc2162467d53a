//! The validated CORS configuration: [`Cors`] and its builder.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, Method};

use crate::{
    config::HumanDuration,
    error::{ConfigError, ConfigErrorKind},
    stack::CorsConfig,
};

/// A validated CORS configuration: which origins may call, with which methods and headers.
///
/// Cheap to clone (an [`Arc`] inside). Every header value the layer sends is built here, once,
/// so a request costs no allocation. Make one with [`Cors::from_config`] (the stack's `[cors]`
/// section) or with the builder [`Cors::new`]; wrap a service with
/// [`CorsLayer`](super::CorsLayer). See the [module docs](super).
#[derive(Clone)]
pub struct Cors {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// `None`: any origin (`*`); `Some`: the allow-list, each value as the client sends it.
    pub(super) origins: Option<Box<[HeaderValue]>>,
    pub(super) credentials: bool,
    pub(super) allow_methods: Option<HeaderValue>,
    pub(super) allow_headers: Option<HeaderValue>,
    pub(super) expose_headers: Option<HeaderValue>,
    pub(super) max_age: HeaderValue,
}

impl Cors {
    /// A builder with the defaults of the stack's `[cors]` section ([`CorsConfig::default`]):
    /// methods `GET`, `HEAD`, `POST`, request header `content-type`, no exposed header, no
    /// credentials, a preflight cached for 10 minutes, and no origin yet (one is required).
    ///
    /// ```
    /// use battlement::cors::Cors;
    /// use http::{Method, header};
    /// use std::time::Duration;
    ///
    /// let cors = Cors::new()
    ///     .allow_origins(["https://app.example.com"])
    ///     .allow_methods([Method::GET, Method::POST, Method::DELETE])
    ///     .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
    ///     .expose_headers([header::HeaderName::from_static("x-request-id")])
    ///     .allow_credentials(true)
    ///     .max_age(Duration::from_secs(3600))
    ///     .build()
    ///     .unwrap();
    /// # let _ = cors;
    ///
    /// // Any origin with credentials is refused.
    /// let err = Cors::new().allow_any_origin().allow_credentials(true).build().unwrap_err();
    /// assert_eq!(err.field(), "cors.allow_origins");
    /// ```
    // A `Cors` is always validated: `new` starts the builder whose `build` validates.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> CorsBuilder {
        CorsBuilder {
            config: CorsConfig::default(),
        }
    }

    /// Validates the stack's `[cors]` section (its `enabled` flag is not read).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`cors.allow_origins[1]`, `cors.allow_methods[0]`,
    /// ...): no origin ([`ConfigErrorKind::Missing`]); an origin that is not
    /// `http(s)://host[:port]`, a method or header name that does not parse, `*` mixed with
    /// other origins ([`ConfigErrorKind::Invalid`]); `*` as the origin, the request headers,
    /// the methods or the exposed headers together with `allow_credentials = true`
    /// ([`ConfigErrorKind::Unsafe`]: browsers refuse or ignore these, and an origin `*` with
    /// credentials would let any site make credentialed calls).
    pub fn from_config(c: &CorsConfig) -> Result<Self, ConfigError> {
        if c.allow_origins.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "cors.allow_origins",
                "list the origins allowed to call this API (https://app.example.com)",
            ));
        }
        let wildcard = c.allow_origins.iter().any(|o| o == "*");
        if wildcard && c.allow_credentials {
            return Err(ConfigError::unsafe_value(
                "cors.allow_origins",
                "`*` with allow_credentials = true would let any site make credentialed calls; list the origins",
            ));
        }
        let origins = if wildcard {
            if c.allow_origins.len() > 1 {
                return Err(ConfigError::invalid(
                    "cors.allow_origins",
                    "`*` cannot be combined with other origins",
                ));
            }
            None
        } else {
            let mut origins = Vec::with_capacity(c.allow_origins.len());
            for (i, o) in c.allow_origins.iter().enumerate() {
                origins.push(parse_origin(o).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("cors.allow_origins[{i}]"),
                        "expected an origin such as https://app.example.com (scheme, host, optional port, no path)",
                    )
                })?);
            }
            Some(origins.into_boxed_slice())
        };
        let mut methods = Vec::with_capacity(c.allow_methods.len());
        for (i, m) in c.allow_methods.iter().enumerate() {
            methods.push(Method::from_str(m).map_err(|_| {
                ConfigError::invalid(format!("cors.allow_methods[{i}]"), "not an HTTP method")
            })?);
        }
        // tower-http panics when it meets these with credentials; here they are a typed error.
        if c.allow_credentials && methods.iter().any(|m| m.as_str() == "*") {
            return Err(ConfigError::unsafe_value(
                "cors.allow_methods",
                "`*` is not allowed with allow_credentials = true",
            ));
        }
        let allow_headers = if c.allow_headers.iter().any(|h| h == "*") {
            if c.allow_credentials {
                return Err(ConfigError::unsafe_value(
                    "cors.allow_headers",
                    "`*` is not allowed with allow_credentials = true",
                ));
            }
            Some(HeaderValue::from_static("*"))
        } else {
            join(
                header_names(&c.allow_headers, "cors.allow_headers")?
                    .iter()
                    .map(HeaderName::as_str),
            )
        };
        let expose = header_names(&c.expose_headers, "cors.expose_headers")?;
        if c.allow_credentials && expose.iter().any(|h| h.as_str() == "*") {
            return Err(ConfigError::unsafe_value(
                "cors.expose_headers",
                "`*` is not allowed with allow_credentials = true",
            ));
        }
        let inner = Inner {
            origins,
            credentials: c.allow_credentials,
            allow_methods: join(methods.iter().map(Method::as_str)),
            allow_headers,
            expose_headers: join(expose.iter().map(HeaderName::as_str)),
            max_age: HeaderValue::from(c.max_age.get().as_secs()),
        };
        inner.share_values();
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Whether any origin is allowed (`*`).
    pub fn allows_any_origin(&self) -> bool {
        self.inner.origins.is_none()
    }

    /// Whether `origin` (exactly as a browser sends it in `Origin`) may call.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        match &self.inner.origins {
            None => true,
            Some(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }
}

impl Inner {
    /// Turns every owned value into a shared one now. A `HeaderValue` made from a string holds
    /// its bytes in a plain vector until its first clone, which then allocates the shared
    /// counter; cloning each once here leaves every clone on the request path a reference
    /// count increment.
    fn share_values(&self) {
        let all = self
            .origins
            .iter()
            .flat_map(|l| l.iter())
            .chain(self.allow_methods.iter())
            .chain(self.allow_headers.iter())
            .chain(self.expose_headers.iter())
            .chain(std::iter::once(&self.max_age));
        for v in all {
            drop(v.clone());
        }
    }
}

impl fmt::Debug for Cors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Cors")
            .field("origins", &i.origins)
            .field("credentials", &i.credentials)
            .field("allow_methods", &i.allow_methods)
            .field("allow_headers", &i.allow_headers)
            .field("expose_headers", &i.expose_headers)
            .field("max_age", &i.max_age)
            .finish()
    }
}

/// Builds a [`Cors`] in code; [`build`](CorsBuilder::build) validates it like
/// [`Cors::from_config`] (field paths are the config's: `cors.allow_origins[0]`, ...).
///
/// Each setter replaces what an earlier call of the same setter set.
#[derive(Clone, Debug)]
#[must_use]
pub struct CorsBuilder {
    config: CorsConfig,
}

impl CorsBuilder {
    /// The allowed origins, `scheme://host[:port]` each (`https://app.example.com`).
    pub fn allow_origins<I>(mut self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.config.allow_origins = origins.into_iter().map(|o| o.as_ref().to_owned()).collect();
        self
    }

    /// Any origin (`Access-Control-Allow-Origin: *`); refused with credentials.
    pub fn allow_any_origin(mut self) -> Self {
        self.config.allow_origins = vec!["*".to_owned()];
        self
    }

    /// The methods a preflight allows (default `GET`, `HEAD`, `POST`).
    pub fn allow_methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.config.allow_methods = methods.into_iter().map(|m| m.as_str().to_owned()).collect();
        self
    }

    /// The request headers a preflight allows (default `content-type`).
    pub fn allow_headers<I: IntoIterator<Item = HeaderName>>(mut self, headers: I) -> Self {
        self.config.allow_headers = headers.into_iter().map(|h| h.as_str().to_owned()).collect();
        self
    }

    /// Any request header (`Access-Control-Allow-Headers: *`); refused with credentials.
    pub fn allow_any_header(mut self) -> Self {
        self.config.allow_headers = vec!["*".to_owned()];
        self
    }

    /// The response headers scripts may read (`Access-Control-Expose-Headers`).
    pub fn expose_headers<I: IntoIterator<Item = HeaderName>>(mut self, headers: I) -> Self {
        self.config.expose_headers = headers.into_iter().map(|h| h.as_str().to_owned()).collect();
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true` (default `false`).
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.config.allow_credentials = allow;
        self
    }

    /// How long a browser may cache a preflight answer (whole seconds; default 10 minutes).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.config.max_age = HumanDuration::from(max_age);
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// As [`Cors::from_config`]: no origin, an origin that does not parse, `*` with credentials.
    pub fn build(&self) -> Result<Cors, ConfigError> {
        Cors::from_config(&self.config)
    }
}

fn header_names(list: &[String], path: &str) -> Result<Vec<HeaderName>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, h)| {
            HeaderName::from_str(h)
                .map_err(|_| ConfigError::invalid(format!("{path}[{i}]"), "not a header name"))
        })
        .collect()
}

/// The values joined by `,` (tower-http's separator), `None` for an empty list.
fn join<'a>(mut items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let mut out = String::from(items.next()?);
    for i in items {
        out.push(',');
        out.push_str(i);
    }
    // Method and header-name tokens and commas are visible ASCII: always a valid value.
    HeaderValue::from_str(&out).ok()
}

/// `scheme://host[:port]`, scheme http or https, nothing else.
fn parse_origin(o: &str) -> Option<HeaderValue> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))?;
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return None;
    }
    HeaderValue::from_str(o).ok()
}
