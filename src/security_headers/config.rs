//! The header set: presets, builder, HSTS and COEP.

use http::{
    HeaderName, HeaderValue,
    header::{
        CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY,
        REFERRER_POLICY, SERVER, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
        X_DNS_PREFETCH_CONTROL, X_FRAME_OPTIONS, X_XSS_PROTECTION,
    },
};

use super::{ContentSecurityPolicy, PermissionsPolicy, SecurityHeadersLayer};
use crate::{error::ConfigError, net::TrustedProxies};

/// `Cross-Origin-Opener-Policy`.
pub const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
/// `Cross-Origin-Resource-Policy`.
pub const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");
/// `Cross-Origin-Embedder-Policy`.
pub const CROSS_ORIGIN_EMBEDDER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-embedder-policy");
/// `Origin-Agent-Cluster`.
pub const ORIGIN_AGENT_CLUSTER: HeaderName = HeaderName::from_static("origin-agent-cluster");
/// `X-Download-Options`.
pub const X_DOWNLOAD_OPTIONS: HeaderName = HeaderName::from_static("x-download-options");
/// `X-Permitted-Cross-Domain-Policies`.
pub const X_PERMITTED_CROSS_DOMAIN_POLICIES: HeaderName =
    HeaderName::from_static("x-permitted-cross-domain-policies");
/// `X-Powered-By`.
pub const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
/// `Permissions-Policy`.
pub const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
/// `Reporting-Endpoints`.
pub const REPORTING_ENDPOINTS: HeaderName = HeaderName::from_static("reporting-endpoints");

const HSTS_DEFAULT: &str = "max-age=31536000; includeSubDomains";
const HSTS_PRELOAD: &str = "max-age=31536000; includeSubDomains; preload";

/// `Strict-Transport-Security` settings (RFC 6797).
///
/// The default is helmet 8's `max-age=31536000; includeSubDomains` (one year). The layer sends
/// it only on responses to HTTPS requests (browsers ignore it over HTTP, RFC 6797 §7.2) unless
/// [`SecurityHeaders::hsts_always`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hsts {
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Self::new()
    }
}

impl Hsts {
    /// One year, in seconds: the default `max-age`, and the minimum for preloading.
    pub const ONE_YEAR: u64 = 31_536_000;

    /// `max-age=31536000; includeSubDomains`.
    pub const fn new() -> Self {
        Self {
            max_age: Self::ONE_YEAR,
            include_subdomains: true,
            preload: false,
        }
    }

    /// Sets `max-age` in seconds. `0` tells browsers to forget the policy.
    #[must_use]
    pub const fn max_age(mut self, seconds: u64) -> Self {
        self.max_age = seconds;
        self
    }

    /// Sets whether `includeSubDomains` is sent (default: yes).
    #[must_use]
    pub const fn include_subdomains(mut self, include: bool) -> Self {
        self.include_subdomains = include;
        self
    }

    /// Adds `preload`: asks to be put in the browsers' built-in HSTS list (hstspreload.org).
    /// Needs `includeSubDomains` and a `max-age` of at least a year, checked by
    /// [`SecurityHeaders::hsts`]. Hard to undo: the list ships with browsers for months.
    #[must_use]
    pub const fn preload(mut self) -> Self {
        self.preload = true;
        self
    }

    fn header_value(&self) -> HeaderValue {
        match (self.max_age, self.include_subdomains, self.preload) {
            (Self::ONE_YEAR, true, false) => HeaderValue::from_static(HSTS_DEFAULT),
            (Self::ONE_YEAR, true, true) => HeaderValue::from_static(HSTS_PRELOAD),
            (age, sub, pre) => {
                let mut s = format!("max-age={age}");
                if sub {
                    s.push_str("; includeSubDomains");
                }
                if pre {
                    s.push_str("; preload");
                }
                // Digits, letters, `=`, `;` and spaces: always a valid header value.
                HeaderValue::try_from(s).expect("ASCII header value")
            }
        }
    }
}

/// `Cross-Origin-Embedder-Policy` values. Not sent by default (as in helmet since 7.0):
/// `require-corp` breaks every cross-origin embed that does not opt in with CORP or CORS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrossOriginEmbedderPolicy {
    /// `require-corp`: cross-origin resources load only with CORP or CORS.
    RequireCorp,
    /// `credentialless`: cross-origin no-cors resources load without credentials.
    Credentialless,
    /// `unsafe-none`: the browser default.
    UnsafeNone,
}

impl CrossOriginEmbedderPolicy {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequireCorp => "require-corp",
            Self::Credentialless => "credentialless",
            Self::UnsafeNone => "unsafe-none",
        }
    }
}

/// The set of security headers the layer applies: start from a preset, then change it.
///
/// * [`web`](Self::web) (the default): helmet 8 parity, for sites serving HTML.
/// * [`api`](Self::api): for JSON APIs.
/// * [`empty`](Self::empty): nothing, build your own.
///
/// Every header is added only when the handler did not set it, unless
/// [`override_existing`](Self::override_existing) or [`overriding`](Self::overriding) say
/// otherwise. Building the layer ([`layer`](Self::layer)) precomputes everything once.
#[derive(Clone, Debug)]
pub struct SecurityHeaders {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) csp: Option<ContentSecurityPolicy>,
    pub(crate) csp_report_only: Option<ContentSecurityPolicy>,
    pub(crate) hsts: Option<HeaderValue>,
    pub(crate) hsts_always: bool,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) remove: Vec<HeaderName>,
    pub(crate) override_all: bool,
    pub(crate) modes: Vec<(HeaderName, bool)>,
}

impl Default for SecurityHeaders {
    /// [`SecurityHeaders::web`].
    fn default() -> Self {
        Self::web()
    }
}

impl SecurityHeaders {
    /// No header at all; nothing removed.
    pub fn empty() -> Self {
        Self {
            headers: Vec::new(),
            csp: None,
            csp_report_only: None,
            hsts: None,
            hsts_always: false,
            trusted_proxies: TrustedProxies::none(),
            remove: Vec::new(),
            override_all: false,
            modes: Vec::new(),
        }
    }

    /// helmet 8's defaults, value for value:
    ///
    /// | header | value |
    /// |---|---|
    /// | `Content-Security-Policy` | [`ContentSecurityPolicy::web`] |
    /// | `Cross-Origin-Opener-Policy` | `same-origin` |
    /// | `Cross-Origin-Resource-Policy` | `same-origin` |
    /// | `Origin-Agent-Cluster` | `?1` |
    /// | `Referrer-Policy` | `no-referrer` |
    /// | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` (HTTPS only) |
    /// | `X-Content-Type-Options` | `nosniff` |
    /// | `X-DNS-Prefetch-Control` | `off` |
    /// | `X-Download-Options` | `noopen` |
    /// | `X-Frame-Options` | `SAMEORIGIN` |
    /// | `X-Permitted-Cross-Domain-Policies` | `none` |
    /// | `X-XSS-Protection` | `0` (the old XSS auditor caused leaks; turn it off) |
    /// | `X-Powered-By` | removed |
    pub fn web() -> Self {
        let s = HeaderValue::from_static;
        Self {
            headers: vec![
                (CROSS_ORIGIN_OPENER_POLICY, s("same-origin")),
                (CROSS_ORIGIN_RESOURCE_POLICY, s("same-origin")),
                (ORIGIN_AGENT_CLUSTER, s("?1")),
                (REFERRER_POLICY, s("no-referrer")),
                (X_CONTENT_TYPE_OPTIONS, s("nosniff")),
                (X_DNS_PREFETCH_CONTROL, s("off")),
                (X_DOWNLOAD_OPTIONS, s("noopen")),
                (X_FRAME_OPTIONS, s("SAMEORIGIN")),
                (X_PERMITTED_CROSS_DOMAIN_POLICIES, s("none")),
                (X_XSS_PROTECTION, s("0")),
            ],
            csp: Some(ContentSecurityPolicy::web()),
            hsts: Some(HeaderValue::from_static(HSTS_DEFAULT)),
            remove: vec![X_POWERED_BY],
            ..Self::empty()
        }
    }

    /// For JSON APIs, whose responses are never meant to be rendered, framed or cached:
    ///
    /// | header | value | why |
    /// |---|---|---|
    /// | `Content-Security-Policy` | `default-src 'none';frame-ancestors 'none'` | a response opened as a page loads and runs nothing |
    /// | `X-Frame-Options` | `DENY` | no framing (older browsers) |
    /// | `Cache-Control` | `no-store` | responses carry per-user data; no shared or disk cache keeps them |
    /// | `Cross-Origin-Resource-Policy` | `same-origin` | other sites cannot load responses with `no-cors` (CORS requests are unaffected) |
    /// | `Referrer-Policy` | `no-referrer` | |
    /// | `X-Content-Type-Options` | `nosniff` | JSON is never sniffed as HTML or script |
    /// | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` (HTTPS only) | |
    /// | `X-Powered-By` | removed | |
    ///
    /// The document-only headers of [`web`](Self::web) (COOP, Origin-Agent-Cluster,
    /// X-DNS-Prefetch-Control, X-Download-Options, X-XSS-Protection,
    /// X-Permitted-Cross-Domain-Policies) do nothing for JSON and are left out. A handler that
    /// sets its own `Cache-Control` keeps it.
    pub fn api() -> Self {
        let s = HeaderValue::from_static;
        Self {
            headers: vec![
                (X_FRAME_OPTIONS, s("DENY")),
                (CACHE_CONTROL, s("no-store")),
                (CROSS_ORIGIN_RESOURCE_POLICY, s("same-origin")),
                (REFERRER_POLICY, s("no-referrer")),
                (X_CONTENT_TYPE_OPTIONS, s("nosniff")),
            ],
            csp: Some(ContentSecurityPolicy::api()),
            hsts: Some(HeaderValue::from_static(HSTS_DEFAULT)),
            remove: vec![X_POWERED_BY],
            ..Self::empty()
        }
    }

    /// Sets header `name` to `value`, replacing the set's previous value.
    ///
    /// A raw `Content-Security-Policy` replaces the policy built with
    /// [`content_security_policy`](Self::content_security_policy) (and is not validated); a raw
    /// `Strict-Transport-Security` is still sent only over HTTPS.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name == STRICT_TRANSPORT_SECURITY {
            self.hsts = Some(value);
            return self;
        }
        if name == CONTENT_SECURITY_POLICY {
            self.csp = None;
        } else if name == CONTENT_SECURITY_POLICY_REPORT_ONLY {
            self.csp_report_only = None;
        }
        self.remove.retain(|n| *n != name);
        if let Some(entry) = self.headers.iter_mut().find(|(n, _)| *n == name) {
            entry.1 = value;
        } else {
            self.headers.push((name, value));
        }
        self
    }

    /// [`header`](Self::header) from strings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `security_headers.<name>` when the name or value is not
    /// valid in a header.
    pub fn try_header(self, name: &str, value: &str) -> Result<Self, ConfigError> {
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                "security_headers",
                format!(
                    "`{}` is not a header name",
                    name.chars().take(64).collect::<String>().escape_default()
                ),
            )
        })?;
        let header_value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::invalid(
                format!("security_headers.{header_name}"),
                "not a valid header value (control characters or non-ASCII)",
            )
        })?;
        Ok(self.header(header_name, header_value))
    }

    /// Stops sending header `name` (any of the set, including CSP and HSTS).
    #[must_use]
    pub fn without(mut self, name: HeaderName) -> Self {
        if name == CONTENT_SECURITY_POLICY {
            self.csp = None;
        } else if name == CONTENT_SECURITY_POLICY_REPORT_ONLY {
            self.csp_report_only = None;
        } else if name == STRICT_TRANSPORT_SECURITY {
            self.hsts = None;
        }
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// Removes header `name` from every response, even when the handler set it (for headers
    /// that fingerprint the stack, like `X-Powered-By`, which both presets remove).
    #[must_use]
    pub fn remove_header(self, name: HeaderName) -> Self {
        let mut this = self.without(name.clone());
        if !this.remove.contains(&name) {
            this.remove.push(name);
        }
        this
    }

    /// Removes `Server` from every response (off by default: hyper does not set it, and a
    /// proxy in front usually rewrites it).
    #[must_use]
    pub fn remove_server_header(self) -> Self {
        self.remove_header(SERVER)
    }

    /// Stops removing header `name` (for example to let a handler send `X-Powered-By`).
    #[must_use]
    pub fn keep_response_header(mut self, name: HeaderName) -> Self {
        self.remove.retain(|n| *n != name);
        self
    }

    /// Overwrites headers the handler already set, for every header of the set (by default a
    /// handler's own value wins).
    #[must_use]
    pub fn override_existing(mut self) -> Self {
        self.override_all = true;
        self
    }

    /// Overwrites header `name` even when the handler set it.
    #[must_use]
    pub fn overriding(mut self, name: HeaderName) -> Self {
        self.modes.retain(|(n, _)| *n != name);
        self.modes.push((name, true));
        self
    }

    /// Keeps the handler's own value of header `name`, even under
    /// [`override_existing`](Self::override_existing).
    #[must_use]
    pub fn keep_existing(mut self, name: HeaderName) -> Self {
        self.modes.retain(|(n, _)| *n != name);
        self.modes.push((name, false));
        self
    }

    /// Sets the Content-Security-Policy: the enforced one, or the report-only one when
    /// `csp` is [`report_only`](ContentSecurityPolicy::report_only) (both can be set).
    ///
    /// An enforced policy with `frame-ancestors` also sets `X-Frame-Options` to agree with it
    /// (for browsers without CSP 2): `SAMEORIGIN` when the ancestors include `'self'`, `DENY`
    /// otherwise (the header cannot name other origins; browsers that know `frame-ancestors`
    /// ignore it). So a page's set, even one made from [`empty`](Self::empty) or on top of
    /// [`api`](Self::api), never sends `frame-ancestors 'self'` next to `DENY`. A later
    /// [`header`](Self::header) or [`without`](Self::without) for `X-Frame-Options` wins.
    ///
    /// ```
    /// use battlement::security_headers::{ContentSecurityPolicy, SecurityHeaders};
    /// use http::{Request, Response};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let page = SecurityHeaders::api()
    ///     .content_security_policy(ContentSecurityPolicy::web())
    ///     .layer()
    ///     .layer(service_fn(|_: Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(Response::new(()))
    ///     }));
    /// let res = page.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(res.headers()["x-frame-options"], "SAMEORIGIN");
    /// # }
    /// ```
    #[must_use]
    pub fn content_security_policy(mut self, csp: ContentSecurityPolicy) -> Self {
        let name = if csp.is_report_only() {
            self.csp_report_only = Some(csp);
            CONTENT_SECURITY_POLICY_REPORT_ONLY
        } else {
            if let Some(ancestors) = csp.get("frame-ancestors")
                && !self.remove.contains(&X_FRAME_OPTIONS)
            {
                let xfo = if ancestors.iter().any(|s| s.eq_ignore_ascii_case("'self'")) {
                    "SAMEORIGIN"
                } else {
                    "DENY"
                };
                let xfo = HeaderValue::from_static(xfo);
                match self.headers.iter_mut().find(|(n, _)| *n == X_FRAME_OPTIONS) {
                    Some(entry) => entry.1 = xfo,
                    None => self.headers.push((X_FRAME_OPTIONS, xfo)),
                }
            }
            self.csp = Some(csp);
            CONTENT_SECURITY_POLICY
        };
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// Sets `Strict-Transport-Security`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `security_headers.hsts.preload` when `preload` is asked
    /// without `includeSubDomains` or with a `max-age` under a year (the preload list refuses
    /// those).
    pub fn hsts(mut self, hsts: Hsts) -> Result<Self, ConfigError> {
        if hsts.preload && (!hsts.include_subdomains || hsts.max_age < Hsts::ONE_YEAR) {
            return Err(ConfigError::invalid(
                "security_headers.hsts.preload",
                "preload needs includeSubDomains and a max-age of at least 31536000",
            ));
        }
        self.hsts = Some(hsts.header_value());
        Ok(self)
    }

    /// Sends HSTS on every response, HTTPS or not: for a server behind a TLS-terminating proxy
    /// that does not say `X-Forwarded-Proto`, when every client reaches it over HTTPS.
    ///
    /// Pitfall: never in development on `http://localhost`: the browser then insists on HTTPS
    /// for `localhost` (every port, and subdomains with `includeSubDomains`) for a year.
    #[must_use]
    pub fn hsts_always(mut self) -> Self {
        self.hsts_always = true;
        self
    }

    /// Believes `X-Forwarded-Proto`/`Forwarded` from these proxies when deciding whether the
    /// request came over HTTPS (for HSTS). None by default.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Sets `Permissions-Policy` (an empty policy removes it from the set).
    #[must_use]
    pub fn permissions_policy(self, policy: PermissionsPolicy) -> Self {
        if policy.is_empty() {
            return self.without(PERMISSIONS_POLICY);
        }
        // The builder only admits visible ASCII, so the conversion cannot fail.
        match HeaderValue::try_from(policy.to_string()) {
            Ok(value) => self.header(PERMISSIONS_POLICY, value),
            Err(_) => self,
        }
    }

    /// Sets `Cross-Origin-Embedder-Policy` (not sent by default).
    #[must_use]
    pub fn cross_origin_embedder_policy(self, policy: CrossOriginEmbedderPolicy) -> Self {
        self.header(
            CROSS_ORIGIN_EMBEDDER_POLICY,
            HeaderValue::from_static(policy.as_str()),
        )
    }

    /// Sets `Reporting-Endpoints` (`name="url", ...`), the endpoints that
    /// [`ContentSecurityPolicy::report_to`] and other reporting headers name.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `security_headers.reporting_endpoints.<name>` when a name
    /// is not a structured-field key (lowercase letter or `*`, then lowercase letters, digits,
    /// `_`, `-`, `.`, `*`) or a URL is not `https://…`, `http://…` or a path `/…` of visible
    /// ASCII without quotes, backslashes or spaces; `security_headers.reporting_endpoints` when
    /// the list is empty.
    pub fn reporting_endpoints<I, K, V>(self, endpoints: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut out = String::new();
        for (name, url) in endpoints {
            let (name, url) = (name.as_ref(), url.as_ref());
            let key_ok = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'_' | b'-' | b'.' | b'*')
                });
            if !key_ok {
                return Err(ConfigError::invalid(
                    "security_headers.reporting_endpoints",
                    format!(
                        "`{}` is not an endpoint name (lowercase letters, digits, `_-.*`)",
                        name.chars().take(64).collect::<String>().escape_default()
                    ),
                ));
            }
            let url_ok =
                (url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
                    && url
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !url_ok {
                return Err(ConfigError::invalid(
                    format!("security_headers.reporting_endpoints.{name}"),
                    "expected an https:// URL or a path, visible ASCII without quotes or backslashes",
                ));
            }
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(name);
            out.push_str("=\"");
            out.push_str(url);
            out.push('"');
        }
        if out.is_empty() {
            return Err(ConfigError::new(
                crate::ConfigErrorKind::Missing,
                "security_headers.reporting_endpoints",
                "no endpoint given",
            ));
        }
        let value = HeaderValue::try_from(out).map_err(|_| {
            ConfigError::invalid(
                "security_headers.reporting_endpoints",
                "not a valid header value",
            )
        })?;
        Ok(self.header(REPORTING_ENDPOINTS, value))
    }

    /// Whether a per-request CSP nonce will be made.
    pub fn uses_nonce(&self) -> bool {
        self.csp
            .as_ref()
            .is_some_and(ContentSecurityPolicy::uses_nonce)
            || self
                .csp_report_only
                .as_ref()
                .is_some_and(ContentSecurityPolicy::uses_nonce)
    }

    /// Precomputes the set into a layer.
    pub fn layer(self) -> SecurityHeadersLayer {
        SecurityHeadersLayer::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_values() {
        assert_eq!(Hsts::new().header_value(), HSTS_DEFAULT);
        assert_eq!(Hsts::new().preload().header_value(), HSTS_PRELOAD);
        assert_eq!(
            Hsts::new()
                .max_age(60)
                .include_subdomains(false)
                .header_value(),
            "max-age=60"
        );
        let err = SecurityHeaders::web()
            .hsts(Hsts::new().max_age(60).preload())
            .unwrap_err();
        assert_eq!(err.field(), "security_headers.hsts.preload");
        assert!(
            SecurityHeaders::web()
                .hsts(Hsts::new().include_subdomains(false).preload())
                .is_err()
        );
    }

    #[test]
    fn reporting_endpoints() {
        let s = SecurityHeaders::empty()
            .reporting_endpoints([("csp", "https://r.example/csp"), ("default", "/reports")])
            .unwrap();
        assert_eq!(
            s.headers[0],
            (
                REPORTING_ENDPOINTS,
                HeaderValue::from_static(r#"csp="https://r.example/csp", default="/reports""#)
            )
        );
        for (n, u) in [
            ("CSP", "https://r.example"),
            ("csp", "ftp://r.example"),
            ("csp", "https://r.example/\"x"),
            ("csp", "https://r.example/ x"),
        ] {
            assert!(
                SecurityHeaders::empty()
                    .reporting_endpoints([(n, u)])
                    .is_err(),
                "{n} {u}"
            );
        }
        let err = SecurityHeaders::empty()
            .reporting_endpoints([("csp", "https://r.example/\r\n")])
            .unwrap_err();
        assert_eq!(err.field(), "security_headers.reporting_endpoints.csp");
    }

    #[test]
    fn try_header_validates() {
        assert!(SecurityHeaders::empty().try_header("x a", "1").is_err());
        let err = SecurityHeaders::empty()
            .try_header("x-a", "1\r\nx-b: 2")
            .unwrap_err();
        assert_eq!(err.field(), "security_headers.x-a");
        let s = SecurityHeaders::web().without(X_FRAME_OPTIONS);
        assert!(s.headers.iter().all(|(n, _)| *n != X_FRAME_OPTIONS));
    }
}
