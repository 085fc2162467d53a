//! The stack runs its default parts (request id, span/metrics, panic → 500, security headers,
//! body limit, per-address rate limit, timeout) in one engine service. These tests put the
//! same requests through `ServerStack` and through the same layers composed one by one with
//! `ServiceBuilder`, and compare the answers: status, every header, body, typed causes, the
//! id the handler saw, the log lines and (feature `metrics`) the metrics; with every part on,
//! and with each subset of the seven on.

#![cfg(feature = "axum")]

use std::{
    convert::Infallible,
    net::SocketAddr,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Extension, Router,
    body::Body,
    extract::ConnectInfo,
    routing::{get, post},
};
use battlement::{
    auth::api_key::{ApiKeyLayer, ApiKeyRejection, ApiKeys, Principal, PrincipalId, hash_key},
    body_limit::{BodyLimitLayer, PayloadTooLarge},
    https::HttpsRedirectLayer,
    net::TrustedProxies,
    rate_limit::{ClientIp, ExtensionKey, Limit, Quota, RateLimitLayer, RateLimited},
    request_id::{RequestId, SetRequestIdLayer},
    security_headers::{ContentSecurityPolicy, CspNonce, Hsts, SecurityHeaders},
    stack::{
        BodyTimedOut, CatchPanicLayer, ObserveLayer, Panicked, RequestTimeoutLayer, ServerStack,
        TimedOut,
    },
};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

/// The tests of this file run one at a time: tracing caches per call site whether anyone
/// listens, and a test without a subscriber running beside one with a (thread-local)
/// subscriber can leave the latter's call sites switched off.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Svc = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The parts of the default stack, set one by one.
#[derive(Clone)]
struct Parts {
    request_id: SetRequestIdLayer,
    observe: ObserveLayer,
    security_headers: battlement::security_headers::SecurityHeadersLayer,
    body_limit: BodyLimitLayer,
    timeout: RequestTimeoutLayer,
}

impl Parts {
    fn new() -> Self {
        Self {
            request_id: SetRequestIdLayer::new().ignore_incoming(),
            observe: ObserveLayer::new([], TrustedProxies::none(), false, true),
            security_headers: SecurityHeaders::api().layer(),
            body_limit: BodyLimitLayer::new(64),
            timeout: RequestTimeoutLayer::new(Duration::from_secs(1)),
        }
    }
}

/// A per-address limit of 60 a minute, burst 3, with a store of its own.
fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::new(Limit::new(
        ClientIp::new(TrustedProxies::none()),
        Quota::per_minute(std::num::NonZeroU32::new(60).unwrap())
            .with_burst(std::num::NonZeroU32::new(3).unwrap()),
    ))
}

/// `(fused, composed)`: [`router`] wrapped in the parts as `ServerStack` fuses them, and in
/// the same parts one by one.
macro_rules! both {
    ($parts:expr) => {{
        let parts: &Parts = &$parts;
        let stack = ServerStack::new()
            .request_id(parts.request_id.clone())
            .observe(parts.observe.clone())
            .security_headers(parts.security_headers.clone())
            .body_limit(parts.body_limit.clone())
            .rate_limit_ip(rate_limit())
            .timeout(parts.timeout);
        assert_eq!(
            stack.enabled(),
            [
                "request_id",
                "observe",
                "catch_panic",
                "security_headers",
                "body_limit",
                "rate_limit_ip",
                "timeout"
            ]
        );
        let fused: Svc = BoxCloneSyncService::new(router().layer(stack));
        let composed = ServiceBuilder::new()
            .layer(parts.request_id.clone())
            .layer(parts.observe.clone())
            .layer(CatchPanicLayer::new())
            .layer(parts.security_headers.clone())
            .layer(parts.body_limit.clone())
            .layer(rate_limit())
            .layer(parts.timeout)
            // The application's panics, next to it (as `ServerStack` composes the parts).
            .layer(CatchPanicLayer::new());
        let composed: Svc = BoxCloneSyncService::new(router().layer(composed));
        (fused, composed)
    }};
}

/// A body of ten 10-byte chunks and no length.
struct Chunked(u8);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"0123456789",
        )))))
    }
}

/// Ten bytes, then nothing ever.
struct Stalls(Option<()>);

impl http_body::Body for Stalls {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(()) => Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"0123456789",
            ))))),
            None => Poll::Pending,
        }
    }
}

fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|Extension(id): Extension<RequestId>| async move {
                let current = RequestId::current().map(|c| c.to_string());
                format!("{id} {current:?}")
            }),
        )
        .route(
            "/own-headers",
            get(|| async {
                Response::builder()
                    .header(header::X_FRAME_OPTIONS, "SAMEORIGIN")
                    .header(header::SET_COOKIE, "a=1")
                    .header(header::SET_COOKIE, "b=2")
                    .header("x-powered-by", "php")
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .body(Body::from("own"))
                    .unwrap()
            }),
        )
        .route(
            "/nonce",
            get(|Extension(n): Extension<CspNonce>| async move { n.to_string() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/panic", get(panicking))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
}

async fn panicking() -> &'static str {
    panic!("internal detail 7f3a")
}

fn request(method: &str, uri: &str, body: Body) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 9], 40_000))));
    req
}

/// What a response says, with its request id replaced by `<id>` wherever it appears.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
    causes: [bool; 5],
}

async fn answer(res: Response<Body>) -> Answer {
    let id = res
        .extensions()
        .get::<RequestId>()
        .expect("every response has the id in its extensions")
        .to_string();
    assert_eq!(
        res.headers()["x-request-id"],
        id.as_str(),
        "the header is the extension"
    );
    let ext = res.extensions();
    let causes = [
        ext.get::<Panicked>().is_some(),
        ext.get::<PayloadTooLarge>().is_some(),
        ext.get::<RateLimited>().is_some(),
        ext.get::<TimedOut>().is_some(),
        ext.get::<BodyTimedOut>().is_some(),
    ];
    let status = res.status();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap().replace(&id, "<id>"),
            )
        })
        .collect();
    headers.sort();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec())
        .unwrap()
        .replace(&id, "<id>");
    Answer {
        status,
        headers,
        body,
        causes,
    }
}

/// Sends `make()` through both and checks the answers are the same; returns it.
async fn same(fused: &Svc, composed: &Svc, make: impl Fn() -> Request<Body>) -> Answer {
    let a = answer(fused.clone().oneshot(make()).await.unwrap()).await;
    let b = answer(composed.clone().oneshot(make()).await.unwrap()).await;
    assert_eq!(a, b);
    a
}

#[tokio::test(start_paused = true)]
async fn the_fused_stack_answers_as_the_composed_layers() {
    let _serial = SERIAL.lock().await;
    let parts = Parts::new();
    let (fused, composed) = both!(parts);

    // Plain: the handler sees the id in its extensions and as the current one.
    let a = same(&fused, &composed, || request("GET", "/", Body::empty())).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "<id> Some(\"<id>\")");
    assert!(a.headers.iter().any(|(n, _)| n == "x-content-type-options"));
    assert!(
        a.headers
            .iter()
            .any(|(n, v)| n == "ratelimit" && v.contains("r=2"))
    );

    // An incoming id is ignored (no proxy is trusted).
    let a = same(&fused, &composed, || {
        let mut req = request("GET", "/", Body::empty());
        req.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("from-outside"));
        req
    })
    .await;
    assert!(!a.body.contains("from-outside"));

    // The handler's own headers: kept, dropped or overridden as the security headers say.
    let a = same(&fused, &composed, || {
        request("GET", "/own-headers", Body::empty())
    })
    .await;
    assert!(a.headers.contains(&("set-cookie".into(), "b=2".into())));
    assert!(!a.headers.iter().any(|(n, _)| n == "x-powered-by"));

    // Too large, by its length and by streaming.
    let a = same(&fused, &composed, || {
        request("POST", "/echo", Body::from(vec![b'x'; 100]))
    })
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.causes, [false, true, false, false, false]);
    assert!(a.body.contains("<id>"), "{}", a.body);

    let (fused, composed) = both!(parts);
    let a = same(&fused, &composed, || {
        request("POST", "/echo", Body::new(Chunked(10)))
    })
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

    // A panic while polling: 500 with the id, nothing of the panic, the security and
    // rate-limit headers (the application's panics are caught next to it).
    let (fused, composed) = both!(parts);
    let a = same(&fused, &composed, || {
        request("GET", "/panic", Body::empty())
    })
    .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.causes, [true, false, false, false, false]);
    assert!(a.headers.iter().any(|(n, _)| n == "x-content-type-options"));
    assert!(a.headers.iter().any(|(n, _)| n == "ratelimit"));
    assert!(
        a.body.contains("<id>") && !a.body.contains("7f3a"),
        "{}",
        a.body
    );

    // A timeout: 503 with the id.
    let a = same(&fused, &composed, || request("GET", "/slow", Body::empty())).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.causes, [false, false, false, true, false]);

    // A body the client stops sending: 408, `Connection: close`, with the id.
    let a = same(&fused, &composed, || {
        let mut req = request("POST", "/echo", Body::new(Stalls(Some(()))));
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
        req
    })
    .await;
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(a.causes, [false, false, false, false, true]);
    assert!(a.body.contains("<id>"), "{}", a.body);
    assert!(
        a.headers
            .iter()
            .any(|(n, v)| n == "connection" && v == "close")
    );
    assert!(a.headers.iter().any(|(n, _)| n == "ratelimit"));

    // Rate limited: the burst is 3 and the two services keep separate counts.
    let (fused, composed) = both!(parts);
    for _ in 0..3 {
        let a = same(&fused, &composed, || request("GET", "/", Body::empty())).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = same(&fused, &composed, || request("GET", "/", Body::empty())).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.causes, [false, false, true, false, false]);
    assert!(a.headers.iter().any(|(n, _)| n == "retry-after"));
}

#[tokio::test]
async fn other_settings_of_the_parts_carry_over() {
    let _serial = SERIAL.lock().await;
    let mut parts = Parts::new();
    // Incoming ids trusted, a custom header, HSTS on HTTPS only, a CSP nonce.
    parts.request_id = SetRequestIdLayer::new()
        .try_header("x-correlation-id")
        .unwrap();
    parts.security_headers = SecurityHeaders::web()
        .content_security_policy(ContentSecurityPolicy::web().with_nonce())
        .hsts(Hsts::new().max_age(63_072_000))
        .unwrap()
        .layer();
    let (fused, composed) = both!(parts);

    for svc in [&fused, &composed] {
        let mut req = request("GET", "/", Body::empty());
        req.headers_mut()
            .insert("x-correlation-id", HeaderValue::from_static("order-42"));
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-correlation-id"], "order-42");
        assert!(!res.headers().contains_key("x-request-id"));
    }
    for uri in ["http://api.example/", "https://api.example/"] {
        let a = answer_with(&fused, uri, "x-correlation-id").await;
        let b = answer_with(&composed, uri, "x-correlation-id").await;
        assert_eq!(a, b, "{uri}");
        let hsts = a.iter().any(|(n, _)| n == "strict-transport-security");
        assert_eq!(hsts, uri.starts_with("https"), "{uri}");
    }

    // The nonce the handler sees is the one in the CSP.
    let (fused, _) = both!(parts);
    let res = fused
        .clone()
        .oneshot(request("GET", "/nonce", Body::empty()))
        .await
        .unwrap();
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let nonce = String::from_utf8(body.to_vec()).unwrap();
    assert!(csp.contains(&format!("'nonce-{nonce}'")), "{csp} / {nonce}");
}

/// The sorted headers of an answer to `GET uri`, its id header's value replaced; an `https://`
/// one as the TLS listener hands it on (the URI's scheme alone is the client's claim).
async fn answer_with(svc: &Svc, uri: &str, id_header: &str) -> Vec<(String, String)> {
    let mut req = request("GET", uri, Body::empty());
    if uri.starts_with("https://") {
        req.extensions_mut().insert(battlement::net::Scheme::Https);
    }
    let res = svc.clone().oneshot(req).await.unwrap();
    let id = res.extensions().get::<RequestId>().unwrap().to_string();
    let mut h: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str() != "content-security-policy")
        .map(|(n, v)| {
            let v = v.to_str().unwrap();
            let v = if n.as_str() == id_header {
                v.replace(&id, "<id>")
            } else {
                v.to_owned()
            };
            (n.as_str().to_owned(), v)
        })
        .collect();
    h.sort();
    h
}

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf;

/// The log lines of one request, its id and latency replaced.
async fn logged(svc: &Svc, uri: &str) -> Vec<String> {
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let res = svc
        .clone()
        .oneshot(request("GET", uri, Body::empty()))
        .await
        .unwrap();
    drop(guard);
    let id = res.extensions().get::<RequestId>().unwrap().to_string();
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    out.lines()
        .map(|l| {
            let l = l.replace(&id, "<id>");
            match l.find("latency_us=") {
                Some(i) => {
                    let end = l[i..].find(' ').map_or(l.len(), |e| i + e);
                    format!("{}latency_us=<n>{}", &l[..i], &l[end..])
                }
                None => l,
            }
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn the_fused_stack_logs_as_the_composed_layers() {
    let _serial = SERIAL.lock().await;
    let mut parts = Parts::new();
    parts.request_id = SetRequestIdLayer::new();
    let (fused, composed) = both!(parts);
    for uri in ["/", "/panic", "/own-headers"] {
        let a = logged(&fused, uri).await;
        let b = logged(&composed, uri).await;
        assert_eq!(a, b, "{uri}");
        // The span has the id and the client; the response is logged in it.
        let response = a
            .iter()
            .find(|l| l.contains("response"))
            .unwrap_or_else(|| panic!("{a:#?}"));
        assert!(response.contains("request_id=<id>"), "{response}");
        assert!(response.contains("client=192.0.2.9"), "{response}");
        assert!(response.contains("method=GET"), "{response}");
    }
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread")]
async fn the_fused_stack_records_the_same_metrics() {
    let _serial = SERIAL.lock().await;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let parts = Parts::new();
    let mut seen = Vec::new();
    for which in 0..2 {
        let (fused, composed) = both!(parts);
        let svc = if which == 0 { fused } else { composed };
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let guard = metrics::set_default_local_recorder(&recorder);
        for uri in ["/", "/panic", "/missing"] {
            svc.clone()
                .oneshot(request("GET", uri, Body::empty()))
                .await
                .unwrap();
        }
        drop(guard);
        let mut metrics: Vec<String> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let value = match value {
                    DebugValue::Counter(n) => format!("counter {n}"),
                    DebugValue::Histogram(v) => format!("histogram of {}", v.len()),
                    DebugValue::Gauge(g) => format!("gauge {}", g.into_inner()),
                };
                format!("{:?} {value}", key.key())
            })
            .collect();
        metrics.sort();
        seen.push(metrics);
    }
    assert_eq!(seen[0], seen[1]);
    assert!(
        seen[0]
            .iter()
            .any(|m| m.contains("battlement_rejections_total") && m.contains("panic")),
        "{:#?}",
        seen[0]
    );
}

/// What any response says, with its request id (if any) replaced by `<id>`.
async fn answer_any(res: Response<Body>) -> (StatusCode, Vec<(String, String)>, String, [bool; 5]) {
    let id = res.extensions().get::<RequestId>().map(ToString::to_string);
    let hide = |s: &str| match &id {
        Some(id) => s.replace(id.as_str(), "<id>"),
        None => s.to_owned(),
    };
    let ext = res.extensions();
    let causes = [
        ext.get::<Panicked>().is_some(),
        ext.get::<PayloadTooLarge>().is_some(),
        ext.get::<RateLimited>().is_some(),
        ext.get::<TimedOut>().is_some(),
        ext.get::<BodyTimedOut>().is_some(),
    ];
    let status = res.status();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), hide(v.to_str().unwrap())))
        .collect();
    headers.sort();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = hide(std::str::from_utf8(&body).unwrap());
    (status, headers, body, causes)
}

/// The seven parts of the engine, each on or off (128 stacks), against the same parts that
/// are on composed by hand with `ServiceBuilder` (the application's panics caught next to it
/// as well, as `ServerStack` composes them): every answer the same.
#[tokio::test(start_paused = true)]
async fn every_subset_of_the_default_parts_answers_as_those_layers_composed_by_hand() {
    let _serial = SERIAL.lock().await;
    let parts = Parts::new();
    for mask in 0u8..128 {
        let on = |i: u8| mask & (1 << i) != 0;
        let both = || {
            let stack = ServerStack::new()
                .request_id(on(0).then(|| parts.request_id.clone()))
                .observe(on(1).then(|| parts.observe.clone()))
                .catch_panic(on(2).then(CatchPanicLayer::new))
                .security_headers(on(3).then(|| parts.security_headers.clone()))
                .body_limit(on(4).then(|| parts.body_limit.clone()))
                .timeout(on(6).then_some(parts.timeout));
            let stack = if on(5) {
                stack.rate_limit_ip(rate_limit())
            } else {
                stack.rate_limit_ip(None)
            };
            assert_eq!(stack.enabled().len(), mask.count_ones() as usize);
            let engine: Svc = BoxCloneSyncService::new(router().layer(stack));
            let composed = ServiceBuilder::new()
                .option_layer(on(0).then(|| parts.request_id.clone()))
                .option_layer(on(1).then(|| parts.observe.clone()))
                .option_layer(on(2).then(CatchPanicLayer::new))
                .option_layer(on(3).then(|| parts.security_headers.clone()))
                .option_layer(on(4).then(|| parts.body_limit.clone()))
                .option_layer(on(5).then(rate_limit))
                .option_layer(on(6).then_some(parts.timeout))
                .option_layer(on(2).then(CatchPanicLayer::new));
            let composed: Svc = BoxCloneSyncService::new(router().layer(composed));
            (engine, composed)
        };
        let mut requests: Vec<Box<dyn Fn() -> Request<Body>>> = vec![
            Box::new(|| request("GET", "/own-headers", Body::empty())),
            Box::new(|| request("POST", "/echo", Body::from(vec![b'x'; 100]))),
            Box::new(|| request("POST", "/echo", Body::new(Chunked(10)))),
            Box::new(|| request("POST", "/echo", Body::from("small"))),
            Box::new(|| request("GET", "/slow", Body::empty())),
        ];
        if on(2) {
            // Without a catcher the panic is the caller's, in both.
            requests.push(Box::new(|| request("GET", "/panic", Body::empty())));
        }
        if on(6) {
            // Without a timeout nothing ends the wait, in both.
            requests.push(Box::new(|| {
                let mut req = request("POST", "/echo", Body::new(Stalls(Some(()))));
                req.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
                req
            }));
        }
        for make in &requests {
            let (engine, composed) = both();
            let a = answer_any(engine.oneshot(make()).await.unwrap()).await;
            let b = answer_any(composed.oneshot(make()).await.unwrap()).await;
            assert_eq!(a, b, "parts {mask:07b}");
        }
        // Past the burst of 3 (when the rate limit is on), on one pair.
        let (engine, composed) = both();
        for _ in 0..4 {
            let a = answer_any(engine.clone().oneshot(requests[0]()).await.unwrap()).await;
            let b = answer_any(composed.clone().oneshot(requests[0]()).await.unwrap()).await;
            assert_eq!(a, b, "parts {mask:07b}");
        }
    }
}

/// A store of one key, for principal `p-1`.
fn keys() -> ApiKeyLayer {
    let p = Principal::new(PrincipalId::new("p-1").unwrap());
    ApiKeyLayer::new(
        ApiKeys::builder()
            .key(hash_key("key-0123456789abcdef"), &p)
            .build()
            .unwrap(),
    )
}

/// A per-principal limit of 60 a minute, burst 2, with a store of its own.
fn per_principal() -> RateLimitLayer {
    RateLimitLayer::new(Limit::new(
        ExtensionKey::<Principal>::new(),
        Quota::per_minute(std::num::NonZeroU32::new(60).unwrap())
            .with_burst(std::num::NonZeroU32::new(2).unwrap()),
    ))
}

/// The HTTPS redirect, the API key and the per-principal limit (each on or off) with the
/// default parts (all on, all off, and two mixes): the engine answers as the layers
/// composed by hand in the stack's order, the refusals of the API key included.
#[tokio::test(start_paused = true)]
async fn the_redirect_and_authentication_run_in_the_engine_as_composed_by_hand() {
    let _serial = SERIAL.lock().await;
    let mut parts = Parts::new();
    // Shorter than the drain's own bound (1 s): a refusal's drain ends at the deadline.
    parts.timeout = RequestTimeoutLayer::new(Duration::from_millis(500));
    for defaults in [0b111_1111u8, 0, 0b101_0101, 0b011_0110] {
        for extra in 0u8..8 {
            let mask = u16::from(defaults) | (u16::from(extra) << 7);
            let on = |i: u8| mask & (1 << i) != 0;
            let https = || HttpsRedirectLayer::new(["api.example"]).unwrap();
            let both = || {
                let stack = ServerStack::new()
                    .request_id(on(0).then(|| parts.request_id.clone()))
                    .observe(on(1).then(|| parts.observe.clone()))
                    .catch_panic(on(2).then(CatchPanicLayer::new))
                    .security_headers(on(3).then(|| parts.security_headers.clone()))
                    .https(on(7).then(https))
                    .body_limit(on(4).then(|| parts.body_limit.clone()))
                    .timeout(on(6).then_some(parts.timeout))
                    .api_key(on(8).then(keys));
                let stack = if on(5) {
                    stack.rate_limit_ip(rate_limit())
                } else {
                    stack.rate_limit_ip(None)
                };
                let stack = if on(9) {
                    stack.rate_limit_principal(per_principal())
                } else {
                    stack.rate_limit_principal(None)
                };
                assert_eq!(stack.enabled().len(), mask.count_ones() as usize);
                let engine: Svc = BoxCloneSyncService::new(router().layer(stack));
                let composed = ServiceBuilder::new()
                    .option_layer(on(0).then(|| parts.request_id.clone()))
                    .option_layer(on(1).then(|| parts.observe.clone()))
                    .option_layer(on(2).then(CatchPanicLayer::new))
                    .option_layer(on(3).then(|| parts.security_headers.clone()))
                    .option_layer(on(7).then(https))
                    .option_layer(on(4).then(|| parts.body_limit.clone()))
                    .option_layer(on(5).then(rate_limit))
                    .option_layer(on(6).then_some(parts.timeout))
                    .option_layer(on(8).then(keys))
                    .option_layer(on(9).then(per_principal))
                    .option_layer(on(2).then(CatchPanicLayer::new));
                let composed: Svc = BoxCloneSyncService::new(router().layer(composed));
                (engine, composed)
            };
            let keyed = |mut req: Request<Body>, key: &'static str| {
                req.headers_mut().insert(
                    header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
                );
                req
            };
            // Over TLS (the listener's extension), so that the redirect lets them through.
            let tls = |mut req: Request<Body>| {
                req.extensions_mut().insert(battlement::net::Scheme::Https);
                req
            };
            let good = "key-0123456789abcdef";
            let mut requests: Vec<Box<dyn Fn() -> Request<Body>>> = vec![
                Box::new(|| request("GET", "http://api.example/own-headers", Body::empty())),
                Box::new(|| request("POST", "http://evil.example/echo", Body::from("x"))),
                Box::new(move || tls(keyed(request("GET", "/own-headers", Body::empty()), good))),
                Box::new(|| tls(request("GET", "/own-headers", Body::empty()))),
                Box::new(|| tls(keyed(request("GET", "/own-headers", Body::empty()), "nope"))),
                Box::new(|| tls(request("POST", "/echo", Body::new(Chunked(10))))),
                Box::new(move || {
                    tls(keyed(
                        request("POST", "/echo", Body::new(Chunked(10))),
                        good,
                    ))
                }),
                Box::new(move || tls(keyed(request("POST", "/echo", Body::from("hi")), good))),
                Box::new(move || tls(keyed(request("GET", "/slow", Body::empty()), good))),
            ];
            if on(2) {
                requests.push(Box::new(move || {
                    tls(keyed(request("GET", "/panic", Body::empty()), good))
                }));
            }
            if on(6) {
                requests.push(Box::new(move || {
                    let mut req = tls(keyed(
                        request("POST", "/echo", Body::new(Stalls(Some(())))),
                        good,
                    ));
                    req.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
                    req
                }));
                // Refused by the key while the body stalls: the drain stops at the deadline,
                // and the refusal (decided) is answered.
                requests.push(Box::new(|| {
                    let mut req = tls(request("POST", "/echo", Body::new(Stalls(Some(())))));
                    req.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("40"));
                    req
                }));
            }
            for (i, make) in requests.iter().enumerate() {
                let (engine, composed) = both();
                let a = answer_any(engine.oneshot(make()).await.unwrap()).await;
                let b = answer_any(composed.oneshot(make()).await.unwrap()).await;
                assert_eq!(a, b, "parts {mask:010b}, request {i}");
                if i == 11 && on(4) && on(8) {
                    // The stalled body refused by the key: the 401 at the deadline, not a 408.
                    assert_eq!(a.0, StatusCode::UNAUTHORIZED, "parts {mask:010b}");
                }
            }
            // Past both bursts (3 per address, 2 per principal), on one pair; the key's
            // cause in the extensions.
            let (engine, composed) = both();
            for _ in 0..4 {
                for make in &requests[2..4] {
                    let a = engine.clone().oneshot(make()).await.unwrap();
                    let b = composed.clone().oneshot(make()).await.unwrap();
                    assert_eq!(
                        a.extensions().get::<ApiKeyRejection>().is_some(),
                        b.extensions().get::<ApiKeyRejection>().is_some()
                    );
                    assert_eq!(
                        answer_any(a).await,
                        answer_any(b).await,
                        "parts {mask:010b}"
                    );
                }
            }
        }
    }
}

/// The signing key of [`signed`].
fn key_ring() -> battlement::signing::KeyRing {
    battlement::signing::KeyRing::new(
        battlement::signing::Key::hmac_sha256("k1", &[0x5a; 32]).unwrap(),
    )
}

/// The signature headers of a request of `method` to `path` with `body`, as the crate's
/// signer makes them (`@method`, `@path`, and `content-digest` for a body).
async fn signed(method: &str, path: &str, body: &'static [u8]) -> http::HeaderMap {
    use battlement::signing::{BufferedBody, SignRequestLayer};
    let signer = SignRequestLayer::new(key_ring())
        .with_components(["@method", "@path"])
        .unwrap();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://api.example{path}"))
        .body(Body::from(body))
        .unwrap();
    let signed = ServiceBuilder::new()
        .layer(signer)
        .service(tower::service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap();
    signed.headers().clone()
}

/// CORS, the breaker and signature verification (each on or off) with the default parts
/// (all on, all off, two mixes): the engine answers as the standalone layers composed by
/// hand in the stack's order (CORS after the redirect, the breaker then the timeout after
/// the per-address limit, verification after the API key), preflights, refused origins,
/// signed, unsigned and tampered requests, a stalled signed body, and the breaker opening on
/// slow answers included.
#[tokio::test(start_paused = true)]
async fn cors_the_breaker_and_signatures_run_in_the_engine_as_composed_by_hand() {
    use battlement::{
        circuit_breaker::{BreakerConfig, CircuitBreakerLayer},
        cors::{Cors, CorsLayer},
        signing::VerifySignatureLayer,
        stack::StackReplayStore,
    };
    let _serial = SERIAL.lock().await;
    let mut parts = Parts::new();
    parts.timeout = RequestTimeoutLayer::new(Duration::from_millis(500));
    let cors = || {
        Cors::new()
            .allow_origins(["https://app.example"])
            .build()
            .unwrap()
    };
    let breaker = || {
        CircuitBreakerLayer::from_config(BreakerConfig::consecutive_failures(2))
            .unwrap()
            .server()
    };
    let verify = || {
        let policy = battlement::signing::VerifyPolicy::new()
            .required_components(["@method", "@path"])
            .unwrap();
        VerifySignatureLayer::with_policy(key_ring(), policy)
            .with_replay_store(StackReplayStore::default())
    };
    for defaults in [0b111_1111u8, 0, 0b101_0101, 0b011_0110] {
        for extra in 0u8..8 {
            // Signed now: paused time moves on (the slow answers), and a signature is
            // good for 300 s.
            let hello = signed("POST", "/echo", b"hello").await;
            let own = signed("GET", "/own-headers", b"").await;
            // One signature a round (each has its own nonce: a second use is a replay).
            let mut slow = Vec::new();
            for _ in 0..4 {
                slow.push(signed("GET", "/slow", b"").await);
            }
            let stalled = signed("POST", "/echo", b"0123456789abcdef").await;
            let mask = u16::from(defaults) | (u16::from(extra) << 7);
            let on = |i: u8| mask & (1 << i) != 0;
            let both = || {
                let stack = ServerStack::new()
                    .request_id(on(0).then(|| parts.request_id.clone()))
                    .observe(on(1).then(|| parts.observe.clone()))
                    .catch_panic(on(2).then(CatchPanicLayer::new))
                    .security_headers(on(3).then(|| parts.security_headers.clone()))
                    .cors(on(7).then(cors))
                    .body_limit(on(4).then(|| parts.body_limit.clone()))
                    .circuit_breaker(on(8).then(breaker))
                    .timeout(on(6).then_some(parts.timeout))
                    .signing(on(9).then(verify));
                let stack = if on(5) {
                    stack.rate_limit_ip(rate_limit())
                } else {
                    stack.rate_limit_ip(None)
                };
                assert_eq!(stack.enabled().len(), mask.count_ones() as usize);
                let engine: Svc = BoxCloneSyncService::new(router().layer(stack));
                let composed = ServiceBuilder::new()
                    .option_layer(on(0).then(|| parts.request_id.clone()))
                    .option_layer(on(1).then(|| parts.observe.clone()))
                    .option_layer(on(2).then(CatchPanicLayer::new))
                    .option_layer(on(3).then(|| parts.security_headers.clone()))
                    .option_layer(on(7).then(|| CorsLayer::new(cors())))
                    .option_layer(on(4).then(|| parts.body_limit.clone()))
                    .option_layer(on(5).then(rate_limit))
                    .option_layer(on(8).then(breaker))
                    .option_layer(on(6).then_some(parts.timeout))
                    .option_layer(on(9).then(verify))
                    .option_layer(on(2).then(CatchPanicLayer::new));
                let composed: Svc = BoxCloneSyncService::new(router().layer(composed));
                (engine, composed)
            };
            let with = |mut req: Request<Body>, headers: &http::HeaderMap| {
                for (name, value) in headers {
                    req.headers_mut().insert(name, value.clone());
                }
                req
            };
            let origin = |mut req: Request<Body>, o: &'static str| {
                req.headers_mut()
                    .insert(header::ORIGIN, HeaderValue::from_static(o));
                req
            };
            let requests: Vec<Box<dyn Fn() -> Request<Body>>> = vec![
                Box::new(|| request("GET", "/own-headers", Body::empty())),
                Box::new(|| {
                    origin(
                        request("GET", "/own-headers", Body::empty()),
                        "https://app.example",
                    )
                }),
                Box::new(|| {
                    origin(
                        request("GET", "/own-headers", Body::empty()),
                        "https://evil.example",
                    )
                }),
                Box::new(|| {
                    let mut req = origin(
                        request("OPTIONS", "/echo", Body::empty()),
                        "https://app.example",
                    );
                    req.headers_mut().insert(
                        header::ACCESS_CONTROL_REQUEST_METHOD,
                        HeaderValue::from_static("POST"),
                    );
                    req
                }),
                Box::new(|| with(request("GET", "/own-headers", Body::empty()), &own)),
                Box::new(|| {
                    origin(
                        with(request("POST", "/echo", Body::from("hello")), &hello),
                        "https://app.example",
                    )
                }),
                // The body is not the one signed: the digest does not match.
                Box::new(|| with(request("POST", "/echo", Body::from("hellO")), &hello)),
                Box::new(|| request("POST", "/echo", Body::from("unsigned"))),
                Box::new(|| request("POST", "/echo", Body::new(Chunked(10)))),
                // Signed, then the body stalls: the timeout's 408 in both (without a
                // timeout nothing ends the wait, in both: only with one).
                Box::new(|| {
                    if !on(6) {
                        return request("GET", "/own-headers", Body::empty());
                    }
                    let mut req = with(
                        request("POST", "/echo", Body::new(Stalls(Some(())))),
                        &stalled,
                    );
                    req.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("16"));
                    req
                }),
            ];
            for (i, make) in requests.iter().enumerate() {
                let (engine, composed) = both();
                let a = answer_any(engine.oneshot(make()).await.unwrap()).await;
                let b = answer_any(composed.oneshot(make()).await.unwrap()).await;
                assert_eq!(a, b, "parts {mask:010b}, request {i}");
                if i == 3 && on(7) {
                    assert_eq!(a.0, StatusCode::OK, "the preflight, parts {mask:010b}");
                }
                if on(9) {
                    // Signed and intact passes; tampered or unsigned does not.
                    let want = match i {
                        4 | 5 => StatusCode::OK,
                        6 | 7 => StatusCode::UNAUTHORIZED,
                        _ => a.0,
                    };
                    assert_eq!(a.0, want, "parts {mask:010b}, request {i}: {a:?}");
                }
            }
            // Slow answers (the timeout's 503) open the breaker after two: on one pair.
            let (engine, composed) = both();
            for (round, signature) in slow.iter().enumerate() {
                let make = || with(request("GET", "/slow", Body::empty()), signature);
                let a = answer_any(engine.clone().oneshot(make()).await.unwrap()).await;
                let b = answer_any(composed.clone().oneshot(make()).await.unwrap()).await;
                assert_eq!(a, b, "parts {mask:010b}, slow round {round}");
                if round == 3 && on(8) && on(6) {
                    assert!(
                        a.1.iter().any(|(n, _)| n == "retry-after"),
                        "the breaker is open: parts {mask:010b}: {a:?}"
                    );
                }
            }
        }
    }
}
