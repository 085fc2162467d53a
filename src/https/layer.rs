use std::{fmt, sync::Arc};

use tower::Layer;

use super::{HttpsRedirect, host::HostPattern};
use crate::{
    error::{ConfigError, ConfigErrorKind},
    net::TrustedProxies,
    problem::DefaultRejection,
};

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) any_host: bool,
    pub(crate) https_port: Option<u16>,
    pub(crate) exempt_exact: Vec<Box<str>>,
    pub(crate) exempt_prefix: Vec<Box<str>>,
    pub(crate) proxies: TrustedProxies,
}

/// Redirects plain-HTTP requests to HTTPS on an allow-listed host. See the [module docs](super).
///
/// Cheap to clone (an `Arc`).
pub struct HttpsRedirectLayer<R = DefaultRejection> {
    pub(crate) config: Arc<Config>,
    pub(crate) rejection: R,
}

impl HttpsRedirectLayer {
    /// Redirects to the hosts in `hosts`: exact names (`example.com`), wildcards that match
    /// any name under a domain (`*.example.com` matches `www.example.com` and
    /// `a.b.example.com`, not `example.com`), or bracketed IPv6 literals (`[2001:db8::1]`).
    /// Names are matched without regard to case. No port: see
    /// [`https_port`](Self::https_port).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the list is empty (use [`allow_any_host`](Self::allow_any_host) if
    /// you mean it) or an entry is not a valid host.
    pub fn new<I, S>(hosts: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts = hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| HostPattern::parse(h.as_ref(), format!("https.hosts[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "https.hosts",
                "no host to redirect to: list the hosts this server answers for, or choose \
                 allow_any_host() explicitly",
            ));
        }
        Ok(Self::with_config(hosts, false))
    }

    /// Redirects to whatever (syntactically valid) host the request names.
    ///
    /// **Dangerous**: the `Location` then points wherever the client's `Host` header says. A
    /// shared cache or a proxy that does not key on `Host` can be poisoned with a permanent
    /// redirect to another site, and links built from the redirect become an open redirect.
    /// Only use it when a proxy in front has already checked the host.
    pub fn allow_any_host() -> Self {
        Self::with_config(Vec::new(), true)
    }

    fn with_config(hosts: Vec<HostPattern>, any_host: bool) -> Self {
        Self {
            config: Arc::new(Config {
                hosts,
                any_host,
                https_port: None,
                exempt_exact: Vec::new(),
                exempt_prefix: Vec::new(),
                proxies: TrustedProxies::none(),
            }),
            rejection: DefaultRejection,
        }
    }
}

impl<R> HttpsRedirectLayer<R> {
    /// Redirects to this HTTPS port (e.g. `8443`) instead of the default 443. The port of the
    /// plain-HTTP request is never kept.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `port` is 0.
    pub fn https_port(mut self, port: u16) -> Result<Self, ConfigError> {
        if port == 0 {
            return Err(ConfigError::out_of_range(
                "https.https_port",
                "port 0 is not a port",
            ));
        }
        Arc::make_mut(&mut self.config).https_port = (port != 443).then_some(port);
        Ok(self)
    }

    /// Lets plain-HTTP requests for exactly `path` through (e.g. `/healthz` for a load
    /// balancer's health check). Matched against the raw path, without the query.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `path` does not start with `/` or holds a query, fragment, `%`,
    /// a dot segment, a space or a control character.
    pub fn exempt_path(mut self, path: &str) -> Result<Self, ConfigError> {
        check_path(path, "https.exempt_path")?;
        Arc::make_mut(&mut self.config)
            .exempt_exact
            .push(path.into());
        Ok(self)
    }

    /// Lets plain-HTTP requests under `prefix` through, segment by segment: `/.well-known/acme-challenge`
    /// matches `/.well-known/acme-challenge` and `/.well-known/acme-challenge/token`, not
    /// `/.well-known/acme-challengex`.
    ///
    /// # Errors
    ///
    /// As [`exempt_path`](Self::exempt_path).
    pub fn exempt_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        check_path(prefix, "https.exempt_prefix")?;
        Arc::make_mut(&mut self.config)
            .exempt_prefix
            .push(prefix.into());
        Ok(self)
    }

    /// Believes `X-Forwarded-Proto`/`Forwarded: proto=` (and the forwarded host) from these
    /// proxies only (see [`crate::net`]). None by default.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies;
        self
    }

    /// Replaces the 421 (and 400) problem responses. The layer still inserts
    /// [`HostNotAllowed`](super::HostNotAllowed) in the extensions of what `rejection` returns.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> HttpsRedirectLayer<R2> {
        HttpsRedirectLayer {
            config: self.config,
            rejection,
        }
    }
}

fn check_path(path: &str, field: &'static str) -> Result<(), ConfigError> {
    let bad = |reason: &'static str| Err(ConfigError::invalid(field, reason));
    if !path.starts_with('/') {
        return bad("must start with `/`");
    }
    if path
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'?' | b'#' | b'%'))
    {
        return bad("must be a raw path without query, fragment, `%`, space or control character");
    }
    if has_dot_segment(path) {
        return bad("must not hold `.` or `..` segments");
    }
    Ok(())
}

pub(crate) fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

impl<R: Clone> Clone for HttpsRedirectLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<R> fmt::Debug for HttpsRedirectLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsRedirectLayer")
            .field("config", &self.config)
            .field("rejection", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, R: Clone> Layer<S> for HttpsRedirectLayer<R> {
    type Service = HttpsRedirect<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpsRedirect {
            inner,
            config: self.config.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_allow_list_is_an_error() {
        let err = HttpsRedirectLayer::new(Vec::<String>::new()).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Missing);
        assert_eq!(err.field(), "https.hosts");
        assert!(HttpsRedirectLayer::allow_any_host().config.any_host);
    }

    #[test]
    fn bad_entries_are_named() {
        let err = HttpsRedirectLayer::new(["example.com", "evil.com/x"]).unwrap_err();
        assert_eq!(err.field(), "https.hosts[1]");
        assert!(HttpsRedirectLayer::new(["example.com:443"]).is_err());
    }

    #[test]
    fn ports_and_paths() {
        let layer = HttpsRedirectLayer::new(["example.com"]).unwrap();
        assert!(layer.clone().https_port(0).is_err());
        assert_eq!(
            layer.clone().https_port(443).unwrap().config.https_port,
            None
        );
        assert_eq!(
            layer.clone().https_port(8443).unwrap().config.https_port,
            Some(8443)
        );
        for bad in [
            "healthz", "/a b", "/a?b", "/a%2f", "/a/../b", "/a/.", "/a\n",
        ] {
            assert!(layer.clone().exempt_path(bad).is_err(), "{bad:?}");
            assert!(layer.clone().exempt_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(layer.exempt_path("/healthz").is_ok());
    }
}
