use std::{
    fmt::{self, Write as _},
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower::Service;

use super::{
    HostNotAllowed, Redirected, ResponseFuture,
    host::{Host, parse_authority},
    layer::{Config, has_dot_segment},
};
use crate::{
    net::{Scheme, peer_addr, resolve},
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType},
};

/// The service of [`HttpsRedirectLayer`](super::HttpsRedirectLayer). See the
/// [module docs](super).
pub struct HttpsRedirect<S, R = DefaultRejection> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) rejection: R,
}

impl<S, R> HttpsRedirect<S, R> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, R: Clone> Clone for HttpsRedirect<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for HttpsRedirect<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsRedirect")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("rejection", &std::any::type_name::<R>())
            .finish()
    }
}

/// The redirect's request step, shared by [`HttpsRedirect`] and the stack's engine: `None`
/// to pass `req` on, else the redirect (or the 421 for a host not allowed).
#[inline]
pub(crate) fn answer<R, B, ResBody>(
    config: &Config,
    rejection: &R,
    req: &Request<B>,
) -> Option<Response<ResBody>>
where
    R: MakeRejection<ResBody>,
    ResBody: Default,
{
    match config.decide(req) {
        Decision::Pass => None,
        // A gRPC client does not follow redirects: the call fails with FAILED_PRECONDITION
        // (it cannot succeed until the client connects over TLS; not UNAVAILABLE, which gRPC
        // clients retry as they are).
        Decision::Redirect(location) if crate::grpc::is_grpc(req.headers()) => {
            let problem = Problem::new(ProblemType::HTTPS_REQUIRED)
                .with_detail("This service requires HTTPS; call it over TLS.")
                .with_request_id_from(req.extensions())
                .with_grpc(true)
                .with_header(header::LOCATION, location);
            Some(crate::problem::refuse(rejection, problem))
        }
        Decision::Redirect(location) => {
            let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            let mut res = Response::new(ResBody::default());
            *res.status_mut() = status;
            res.headers_mut().insert(header::LOCATION, location);
            res.extensions_mut().insert(Redirected { status });
            Some(res)
        }
        Decision::Misdirected { malformed } => {
            tracing::debug!(malformed, "https redirect: host not allowed");
            let problem = Problem::new(ProblemType::MISDIRECTED_REQUEST)
                .with_detail("This server does not answer for the requested host.")
                .with_request_id_from(req.extensions())
                .for_request(req.headers());
            let mut res = crate::problem::refuse(rejection, problem);
            res.extensions_mut().insert(HostNotAllowed { malformed });
            Some(res)
        }
    }
}

/// What to do with a plain-HTTP request.
enum Decision {
    Pass,
    Redirect(HeaderValue),
    Misdirected { malformed: bool },
}

impl Config {
    fn is_exempt(&self, path: &str) -> bool {
        if self.exempt_exact.is_empty() && self.exempt_prefix.is_empty() {
            return false;
        }
        // Anything a later stage could decode or normalize into another path is not exempt.
        if path.contains('%') || has_dot_segment(path) {
            return false;
        }
        self.exempt_exact.iter().any(|p| **p == *path)
            || self.exempt_prefix.iter().any(|p| {
                path.strip_prefix(&**p).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('/') || p.ends_with('/')
                })
            })
    }

    fn decide<B>(&self, req: &Request<B>) -> Decision {
        let headers = req.headers();
        let extensions = req.extensions();
        // 1. The connection (a TLS acceptor's `Scheme` extension), 2. a trusted proxy,
        // 3. otherwise plain HTTP. Never the request target's scheme (an absolute-form
        // `https://` target, HTTP/2 `:scheme`): that is the client's claim, not the connection.
        let mut forwarded_host = None;
        let scheme = match extensions.get::<Scheme>() {
            Some(&scheme) => Some(scheme),
            None if self.proxies.is_empty() => None,
            None => {
                let peer = peer_addr(extensions).map(|a| a.ip());
                let view = resolve(headers, peer, &self.proxies);
                forwarded_host = view.host;
                view.scheme
            }
        };
        if scheme == Some(Scheme::Https) || self.is_exempt(req.uri().path()) {
            return Decision::Pass;
        }

        let raw = match (forwarded_host, req.uri().authority()) {
            (Some(host), _) => Some(host.as_bytes()),
            (None, Some(authority)) => Some(authority.as_str().as_bytes()),
            (None, None) => {
                let mut hosts = headers.get_all(header::HOST).iter();
                match (hosts.next(), hosts.next()) {
                    (Some(host), None) => Some(host.as_bytes()),
                    _ => None,
                }
            }
        };
        let Some((host, _port)) = raw.and_then(parse_authority) else {
            return Decision::Misdirected { malformed: true };
        };
        if !self.any_host && !self.hosts.iter().any(|p| p.matches(&host)) {
            return Decision::Misdirected { malformed: false };
        }
        match self.location(&host, req.uri().path_and_query().map(|p| p.as_str())) {
            Some(location) => Decision::Redirect(location),
            None => Decision::Misdirected { malformed: true },
        }
    }

    fn location(&self, host: &Host<'_>, path_and_query: Option<&str>) -> Option<HeaderValue> {
        // `*` (OPTIONS) and authority-form (CONNECT) targets redirect to the root.
        let path = path_and_query.filter(|p| p.starts_with('/')).unwrap_or("/");
        let mut location = String::with_capacity(8 + 64 + 6 + path.len());
        location.push_str("https://");
        host.write_to(&mut location);
        if let Some(port) = self.https_port {
            // Writing to a `String` cannot fail.
            let _ = write!(location, ":{port}");
        }
        location.push_str(path);
        HeaderValue::try_from(location).ok()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for HttpsRedirect<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
    R: MakeRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match answer(&self.config, &self.rejection, &req) {
            None => ResponseFuture::inner(self.inner.call(req)),
            Some(res) => ResponseFuture::ready(res),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::https::HttpsRedirectLayer;

    fn config() -> Arc<Config> {
        HttpsRedirectLayer::new(["example.com"])
            .and_then(|l| l.exempt_path("/healthz"))
            .and_then(|l| l.exempt_prefix("/static"))
            .and_then(|l| l.exempt_prefix("/files/"))
            .unwrap()
            .config
    }

    #[test]
    fn exemptions_are_exact_or_segment_prefixes() {
        let c = config();
        for yes in [
            "/healthz",
            "/static",
            "/static/a.css",
            "/files/",
            "/files/x",
        ] {
            assert!(c.is_exempt(yes), "{yes}");
        }
        for no in [
            "/healthz/",
            "/healthzz",
            "/staticx",
            "/files",
            "/static/../admin",
            "/static/./a",
            "/static/%2e%2e/admin",
            "/",
        ] {
            assert!(!c.is_exempt(no), "{no}");
        }
    }

    #[test]
    fn location_uses_the_listed_host_and_the_https_port() {
        let mut c = (*config()).clone();
        let host = Host::Name("Example.com.");
        assert_eq!(
            c.location(&host, Some("/a?b")).unwrap(),
            "https://example.com/a?b"
        );
        assert_eq!(
            c.location(&host, Some("*")).unwrap(),
            "https://example.com/"
        );
        assert_eq!(c.location(&host, None).unwrap(), "https://example.com/");
        c.https_port = Some(8443);
        assert_eq!(
            c.location(&host, Some("/")).unwrap(),
            "https://example.com:8443/"
        );
    }
}
