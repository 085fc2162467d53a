//! The request span, rejection audit events and metrics of the server stack.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderMap, HeaderName, Request, Response, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Span, field};

use crate::{
    auth::api_key::{ApiKeyRejection, Principal},
    body_limit::PayloadTooLarge,
    circuit_breaker::CircuitOpen,
    https::HostNotAllowed,
    net::{TrustedProxies, peer_addr, resolve},
    problem::CONTENT_TYPE,
    rate_limit::RateLimited,
    request_id::RequestId,
    signing::SignatureError,
};

use super::{
    panic::Panicked,
    timeout::{BodyTimedOut, TimedOut},
};

/// Headers always redacted: their values are credentials.
pub const SENSITIVE_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "signature",
    "signature-input",
    "x-api-key",
];

/// A span per request (`battlement::request`: method, path, request id, client address,
/// principal), a `battlement::audit` warning for every rejection, sensitive request headers
/// marked [sensitive](http::HeaderValue::set_sensitive), and (feature `metrics`) the counters
/// `battlement_requests_total{method, route, status}`, `battlement_rejections_total{reason}`
/// and the histogram `battlement_request_duration_seconds{method, route}` (per endpoint: a
/// Prometheus exporter turns it into p50/p95/p99).
///
/// `route` is the route template that matched (axum's `MatchedPath`, with feature `axum`, when
/// the stack wraps a `Router` through [`ServerStack::wrap`](super::ServerStack::wrap)), or
/// `unmatched`; `method` is one of the standard methods or `other`. Both are bounded, so the
/// number of series is too, whatever clients send.
///
/// Place it inside the request-id layer so the span has the id.
#[derive(Clone)]
pub struct ObserveLayer {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    redact: Box<[HeaderName]>,
    trusted: TrustedProxies,
    log_headers: bool,
    metrics: bool,
}

impl ObserveLayer {
    /// Redacts [`SENSITIVE_HEADERS`] and `extra`; records metrics when `metrics` is set and the
    /// `metrics` feature is on; logs request headers at `debug` when `log_headers`.
    pub fn new(
        extra: impl IntoIterator<Item = HeaderName>,
        trusted: TrustedProxies,
        log_headers: bool,
        metrics: bool,
    ) -> Self {
        let mut redact: Vec<HeaderName> = SENSITIVE_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        for h in extra {
            if !redact.contains(&h) {
                redact.push(h);
            }
        }
        Self {
            shared: Arc::new(Shared {
                redact: redact.into(),
                trusted,
                log_headers,
                metrics: metrics && cfg!(feature = "metrics"),
            }),
        }
    }
}

impl fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("redact", &self.shared.redact)
            .field("log_headers", &self.shared.log_headers)
            .field("metrics", &self.shared.metrics)
            .finish()
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Observe<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .finish()
    }
}

struct Redacted<'a>(&'a HeaderMap);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.0 {
            if v.is_sensitive() {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (span, labels) = self.shared.begin(&mut req);
        // Before the inner `call`: the latency counts the work done there too (the layers
        // inside that decide in `call`, a handler that blocks), as the stack's own service counts it.
        let start = self.shared.timed(&span).then(Instant::now);
        let inner = {
            let _enter = span.enter();
            self.shared.log_headers(&req);
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            start,
            labels,
        }
    }
}

impl Shared {
    /// The request side: marks the sensitive headers, opens the span (none without a
    /// subscriber at INFO) and takes the metric labels.
    #[inline]
    pub(super) fn begin<B>(&self, req: &mut Request<B>) -> (Span, Option<Labels>) {
        // One pass over the request's headers (usually a handful), no hashing, no allocation.
        for (name, value) in req.headers_mut().iter_mut() {
            if self.redact.contains(name) {
                value.set_sensitive(true);
            }
        }
        // Without a subscriber at INFO, no span at all (and no field formatting).
        let span = if tracing::Level::INFO > tracing::level_filters::LevelFilter::current() {
            Span::none()
        } else {
            tracing::info_span!(
            target: "battlement::request",
            "request",
            method = %req.method(),
            path = req.uri().path(),
            request_id = field::Empty,
            client = field::Empty,
            principal = field::Empty,
            )
        };
        let labels = self.metrics.then(|| Labels::of(req));
        if !span.is_disabled() {
            if let Some(id) = req.extensions().get::<RequestId>() {
                span.record("request_id", id.as_str());
            }
            let peer = peer_addr(req.extensions()).map(|p| p.ip());
            if let Some(ip) = resolve(req.headers(), peer, &self.trusted).client_ip {
                span.record("client", field::display(ip));
            }
        }
        (span, labels)
    }

    /// The request headers at `debug` (redacted), when configured; call inside the span.
    #[inline]
    pub(super) fn log_headers<B>(&self, req: &Request<B>) {
        if self.log_headers {
            tracing::debug!(target: "battlement::request", headers = ?Redacted(req.headers()), "request headers");
        }
    }

    /// Whether a start time is needed: for the span's latency or for the metrics.
    #[inline]
    pub(super) fn timed(&self, span: &Span) -> bool {
        self.metrics || !span.is_disabled()
    }
}

pin_project! {
    /// The response future of [`Observe`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Option<Instant>,
        labels: Option<Labels>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        let out = ready!(this.inner.poll(cx));
        if let Some(start) = *this.start {
            finish(start, this.labels.as_ref(), &out);
        }
        Poll::Ready(out)
    }
}

/// The response side: the audit event of a rejection, the response event and the metrics.
/// Call inside the span.
pub(super) fn finish<B, E>(start: Instant, labels: Option<&Labels>, out: &Result<Response<B>, E>) {
    let elapsed = start.elapsed();
    match out {
        Ok(res) => {
            let status = res.status().as_u16();
            let reason = rejection_reason(res);
            if let Some(reason) = reason {
                tracing::warn!(target: "battlement::audit", status, reason, "request rejected");
            }
            tracing::info!(
                target: "battlement::request",
                status,
                latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "response"
            );
            if let Some(labels) = labels {
                labels.record(status, reason, elapsed);
            }
        }
        Err(_) => {
            tracing::warn!(target: "battlement::request", "the service failed");
            if let Some(labels) = labels {
                labels.record(0, Some("error"), elapsed);
            }
        }
    }
}

/// The metric labels of one request: its method and route template (feature `metrics`).
#[derive(Debug)]
pub(super) struct Labels {
    #[cfg(feature = "metrics")]
    method: &'static str,
    #[cfg(all(feature = "metrics", feature = "axum"))]
    route: Option<axum::extract::MatchedPath>,
}

impl Labels {
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn of<B>(req: &Request<B>) -> Self {
        let _ = req;
        Self {
            #[cfg(feature = "metrics")]
            method: method_label(req.method()),
            #[cfg(all(feature = "metrics", feature = "axum"))]
            route: req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .cloned(),
        }
    }

    /// The route label: one shared allocation for a matched route (cloned by reference
    /// count for each metric), none for `unmatched`.
    #[cfg(feature = "metrics")]
    fn route(&self) -> metrics::SharedString {
        #[cfg(feature = "axum")]
        if let Some(route) = &self.route {
            return metrics::SharedString::from(std::sync::Arc::<str>::from(route.as_str()));
        }
        metrics::SharedString::const_str("unmatched")
    }

    #[cfg(feature = "metrics")]
    fn record(&self, status: u16, reason: Option<&'static str>, elapsed: std::time::Duration) {
        let route = self.route();
        metrics::counter!(
            "battlement_requests_total",
            "method" => self.method,
            "route" => route.clone(),
            "status" => status_label(status)
        )
        .increment(1);
        metrics::histogram!(
            "battlement_request_duration_seconds",
            "method" => self.method,
            "route" => route
        )
        .record(elapsed.as_secs_f64());
        if let Some(reason) = reason {
            metrics::counter!("battlement_rejections_total", "reason" => reason).increment(1);
        }
    }

    #[cfg(not(feature = "metrics"))]
    fn record(&self, _: u16, _: Option<&'static str>, _: std::time::Duration) {}
}

/// The status label: the common codes without an allocation, any other formatted.
#[cfg(feature = "metrics")]
fn status_label(status: u16) -> metrics::SharedString {
    let label = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return metrics::SharedString::from(status.to_string()),
    };
    metrics::SharedString::const_str(label)
}

/// A bounded label for a method: the standard ones by name, anything else `other`.
#[cfg(feature = "metrics")]
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Why the stack refused a request, from the typed cause in the response extensions (or the
/// status of a problem response from elsewhere); `None` when it was not refused.
pub fn rejection_reason<B>(res: &Response<B>) -> Option<&'static str> {
    let ext = res.extensions();
    if ext.get::<RateLimited>().is_some() {
        Some("rate_limit")
    } else if ext.get::<PayloadTooLarge>().is_some() {
        Some("body_limit")
    } else if ext.get::<ApiKeyRejection>().is_some() {
        Some("api_key")
    } else if ext.get::<SignatureError>().is_some() {
        Some("signature")
    } else if ext.get::<CircuitOpen>().is_some() {
        Some("circuit_open")
    } else if ext.get::<HostNotAllowed>().is_some() {
        Some("https")
    } else if ext.get::<TimedOut>().is_some() {
        Some("timeout")
    } else if ext.get::<BodyTimedOut>().is_some() {
        Some("body_timeout")
    } else if ext.get::<Panicked>().is_some() {
        Some("panic")
    } else if res.status().as_u16() >= 400
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            == Some(CONTENT_TYPE.as_bytes())
    {
        Some("other")
    } else {
        None
    }
}

/// Records the authenticated [`Principal`] on the current request span. Placed by the stack
/// just inside the authentication layers.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordPrincipalLayer;

impl<S> Layer<S> for RecordPrincipalLayer {
    type Service = RecordPrincipal<S>;

    fn layer(&self, inner: S) -> RecordPrincipal<S> {
        RecordPrincipal { inner }
    }
}

/// The service of [`RecordPrincipalLayer`].
#[derive(Clone, Debug)]
pub struct RecordPrincipal<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RecordPrincipal<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        record_principal(&req);
        self.inner.call(req)
    }
}

/// The request's principal (if authenticated) on the current span: [`RecordPrincipal`]'s
/// step, shared with the stack's engine.
#[inline]
pub(super) fn record_principal<B>(req: &Request<B>) {
    if let Some(p) = req.extensions().get::<Principal>() {
        Span::current().record("principal", p.id().as_str());
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    #[test]
    fn status_label_is_the_decimal_code() {
        for status in 100..=999u16 {
            assert_eq!(&*super::status_label(status), status.to_string());
        }
    }
}

#[cfg(test)]
mod latency_tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use http::{Request, Response};
    use tower::{Layer, Service, ServiceExt};

    use super::ObserveLayer;
    use crate::net::TrustedProxies;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Blocks for 30 ms in `call` (as a layer that decides there, or a handler that does its
    /// work before returning its future), then answers at once.
    #[derive(Clone, Copy)]
    struct SlowCall;

    impl Service<Request<()>> for SlowCall {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::thread::sleep(Duration::from_millis(30));
            std::future::ready(Ok(Response::new(())))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_latency_counts_the_inner_call() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let svc = ObserveLayer::new([], TrustedProxies::none(), false, false).layer(SlowCall);
        svc.oneshot(Request::new(())).await.unwrap();
        let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let latency: u64 = logs
            .split("latency_us=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no latency in {logs}"));
        assert!(
            latency >= 30_000,
            "latency {latency} µs: the inner call not counted"
        );
    }
}
