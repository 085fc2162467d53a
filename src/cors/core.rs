//! The CORS decision, shared by [`CorsService`](super::CorsService) and the stack engine: not
//! generic over any service or body.

use http::{
    HeaderMap, HeaderValue, Method,
    header::{
        ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
    },
};

use super::Cors;

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Admit {
    /// An `OPTIONS` request: answer `200 OK` with an empty body and these headers, without
    /// calling the inner service (as tower-http does, whether or not the request carries
    /// `Origin` or `Access-Control-Request-Method`).
    Preflight(HeaderMap),
    /// Any other request: call the inner service, then [`Apply::apply`] to its response.
    Pass(Apply),
}

/// The CORS headers for one response. No allocation: the values are the configuration's,
/// cloned (a reference count increment, and only for the values this response needs; none
/// for a request without `Origin` unless headers are exposed).
#[derive(Clone, Debug)]
pub(crate) struct Apply {
    /// Append `Vary: origin` (the answer depends on the origin: an allow-list).
    vary: bool,
    /// Set `Access-Control-Allow-Credentials: true`.
    credentials: bool,
    /// `Access-Control-Allow-Origin`: `*`, or the allowed origin of the request.
    origin: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`.
    expose: Option<HeaderValue>,
}

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ANY: HeaderValue = HeaderValue::from_static("*");

impl Cors {
    /// Decides on a request from its method and headers (`parts.method`, `parts.headers`).
    ///
    /// The headers match tower-http 0.7's `CorsLayer` as the stack configured it: the first
    /// `Origin` is compared byte for byte with the allow-list; `Vary: origin` with an
    /// allow-list (none with `*`); `Access-Control-Allow-Credentials` and
    /// `Access-Control-Expose-Headers` whatever the origin; the allowed methods, headers and
    /// max-age on every preflight, whatever it asks for (the browser enforces them).
    #[inline]
    pub(crate) fn admit(&self, method: &Method, headers: &HeaderMap) -> Admit {
        let c = &*self.inner;
        let origin = match &c.origins {
            None => Some(ANY),
            Some(list) => headers
                .get(ORIGIN)
                .and_then(|o| list.iter().find(|a| a.as_bytes() == o.as_bytes()))
                .cloned(),
        };
        if method == Method::OPTIONS {
            return Admit::Preflight(self.preflight(origin));
        }
        Admit::Pass(Apply {
            vary: c.origins.is_some(),
            credentials: c.credentials,
            origin,
            expose: c.expose_headers.clone(),
        })
    }

    /// The headers of a preflight answer.
    #[cold]
    fn preflight(&self, origin: Option<HeaderValue>) -> HeaderMap {
        let c = &*self.inner;
        let mut h = HeaderMap::with_capacity(6);
        if c.credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if c.origins.is_some() {
            h.insert(VARY, VARY_ORIGIN);
        }
        if let Some(v) = &c.allow_methods {
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        }
        if let Some(v) = &c.allow_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, c.max_age.clone());
        if let Some(o) = origin {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        h
    }
}

impl Apply {
    /// Adds the CORS headers to a response: `Vary` is appended to the handler's, the others
    /// replace a value the handler set (a disallowed origin leaves the handler's
    /// `Access-Control-Allow-Origin`, if any, as tower-http does).
    #[inline]
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        if self.vary {
            headers.append(VARY, VARY_ORIGIN);
        }
        if self.credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(o) = self.origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        if let Some(e) = self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new()
            .allow_origins(origins)
            .allow_credentials(credentials)
            .build()
            .unwrap()
    }

    fn origin(o: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static(o));
        h
    }

    #[test]
    fn apply_is_small() {
        // Two header values and two flags: it rides in the engine's future.
        assert!(size_of::<Apply>() <= 2 * size_of::<HeaderValue>() + 8);
    }

    #[test]
    fn no_origin_gets_vary_only() {
        let Admit::Pass(a) =
            cors(&["https://a.example"], false).admit(&Method::GET, &HeaderMap::new())
        else {
            panic!("not a preflight")
        };
        let mut h = HeaderMap::new();
        a.apply(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h[VARY], "origin");
    }

    #[test]
    fn listed_origin_is_echoed_exactly() {
        let c = cors(&["https://a.example", "https://b.example:8443"], true);
        let Admit::Pass(a) = c.admit(&Method::POST, &origin("https://b.example:8443")) else {
            panic!("not a preflight")
        };
        let mut h = HeaderMap::new();
        a.apply(&mut h);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://b.example:8443");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        // Case matters, as in tower-http (browsers send the serialized origin, lower case).
        let Admit::Pass(a) = c.admit(&Method::POST, &origin("https://A.example")) else {
            panic!("not a preflight")
        };
        let mut h = HeaderMap::new();
        a.apply(&mut h);
        assert!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[test]
    fn preflight_has_its_headers() {
        let c = cors(&["https://a.example"], false);
        let Admit::Preflight(h) = c.admit(&Method::OPTIONS, &origin("https://a.example")) else {
            panic!("a preflight")
        };
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET,HEAD,POST");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert_eq!(h[VARY], "origin");
        assert_eq!(h.len(), 5);
    }
}
