//! battlement's CORS against tower-http 0.7's `CorsLayer` configured from the same
//! `CorsConfig`s (the way `stack::ServerStack` configured it): same status, same headers, same
//! calls to the inner service, on a matrix of configurations and requests and on random ones.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Router, body::Body, routing::get};
use battlement::{
    ConfigErrorKind,
    config::HumanDuration,
    cors::{Cors, CorsLayer},
    stack::{CorsConfig, ServerConfig, ServerStack},
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::cors::{AllowHeaders, AllowOrigin};

/// tower-http's layer as `stack::server::cors_layer` builds it (for configurations that
/// `Cors::from_config` accepted).
fn tower_http_layer(c: &CorsConfig) -> tower_http::cors::CorsLayer {
    let mut layer = tower_http::cors::CorsLayer::new()
        .allow_credentials(c.allow_credentials)
        .max_age(c.max_age.get());
    if c.allow_origins.iter().any(|o| o == "*") {
        layer = layer.allow_origin(AllowOrigin::any());
    } else {
        layer = layer.allow_origin(AllowOrigin::list(
            c.allow_origins
                .iter()
                .map(|o| HeaderValue::from_str(o).unwrap()),
        ));
    }
    layer = layer.allow_methods(
        c.allow_methods
            .iter()
            .map(|m| Method::from_str(m).unwrap())
            .collect::<Vec<_>>(),
    );
    if c.allow_headers.iter().any(|h| h == "*") {
        layer = layer.allow_headers(AllowHeaders::any());
    } else {
        layer = layer.allow_headers(names(&c.allow_headers));
    }
    layer.expose_headers(names(&c.expose_headers))
}

fn names(l: &[String]) -> Vec<HeaderName> {
    l.iter().map(|h| HeaderName::from_str(h).unwrap()).collect()
}

/// The handler: what it sets on its response is chosen by the request's `x-mode`.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, Ordering::Relaxed);
        let mut res = Response::new("body".to_owned());
        *res.status_mut() = StatusCode::ACCEPTED;
        let h = res.headers_mut();
        match req.headers().get("x-mode").map(|v| v.as_bytes()) {
            Some(b"vary") => {
                h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
                h.append(header::VARY, HeaderValue::from_static("cookie"));
            }
            Some(b"cors") => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("https://handler.example"),
                );
                h.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("x-handler"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("false"),
                );
            }
            _ => {}
        }
        async move { Ok::<_, Infallible>(res) }
    })
}

#[derive(Debug, PartialEq)]
struct Seen {
    status: StatusCode,
    headers: BTreeMap<String, Vec<Vec<u8>>>,
    body: String,
    called: usize,
}

async fn seen<S>(svc: S, calls: &AtomicUsize, req: Request<String>) -> Seen
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    let before = calls.load(Ordering::Relaxed);
    let res = svc.oneshot(req).await.unwrap();
    let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (n, v) in res.headers() {
        headers
            .entry(n.as_str().to_owned())
            .or_default()
            .push(v.as_bytes().to_vec());
    }
    Seen {
        status: res.status(),
        headers,
        body: res.into_body(),
        called: calls.load(Ordering::Relaxed) - before,
    }
}

/// One request description, buildable twice.
#[derive(Clone, Debug)]
struct Req {
    method: Method,
    origins: Vec<Vec<u8>>,
    request_method: Option<&'static str>,
    request_headers: Option<String>,
    mode: &'static str,
}

impl Req {
    fn build(&self) -> Request<String> {
        let mut b = Request::builder().method(self.method.clone()).uri("/r");
        for o in &self.origins {
            b = b.header(header::ORIGIN, HeaderValue::from_bytes(o).unwrap());
        }
        if let Some(m) = self.request_method {
            b = b.header(header::ACCESS_CONTROL_REQUEST_METHOD, m);
        }
        if let Some(h) = &self.request_headers {
            b = b.header(header::ACCESS_CONTROL_REQUEST_HEADERS, h.as_str());
        }
        b.header("x-mode", self.mode).body(String::new()).unwrap()
    }
}

/// Runs `req` through both layers built from `cfg`; panics with the difference.
async fn compare(cfg: &CorsConfig, req: &Req) {
    let ours = CorsLayer::new(Cors::from_config(cfg).expect("a valid config"));
    let theirs = tower_http_layer(cfg);
    let calls = Arc::new(AtomicUsize::new(0));
    let a = seen(ours.layer(handler(calls.clone())), &calls, req.build()).await;
    let b = seen(theirs.layer(handler(calls.clone())), &calls, req.build()).await;
    assert_eq!(a, b, "config {cfg:?}\nrequest {req:?}");
}

fn cfg(
    origins: &[&str],
    credentials: bool,
    methods: &[&str],
    headers: &[&str],
    expose: &[&str],
    max_age: u64,
) -> CorsConfig {
    let s = |l: &[&str]| l.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    CorsConfig {
        enabled: true,
        allow_origins: s(origins),
        allow_methods: s(methods),
        allow_headers: s(headers),
        expose_headers: s(expose),
        allow_credentials: credentials,
        max_age: HumanDuration::from_secs(max_age),
    }
}

fn configs() -> Vec<CorsConfig> {
    let origin_sets: &[&[&str]] = &[
        &["https://a.example"],
        &[
            "https://a.example",
            "http://b.example:8080",
            "https://[::1]:8443",
        ],
        &["*"],
    ];
    let method_sets: &[&[&str]] = &[
        &["GET", "HEAD", "POST"],
        &[],
        &["PUT", "get", "PURGE"],
        &["*"],
    ];
    let header_sets: &[&[&str]] = &[
        &["content-type"],
        &[],
        &["X-Custom", "authorization"],
        &["*"],
    ];
    let expose_sets: &[&[&str]] = &[&[], &["x-request-id", "RateLimit"], &["*"]];
    let mut out = Vec::new();
    for o in origin_sets {
        for credentials in [false, true] {
            for m in method_sets {
                for h in header_sets {
                    for e in expose_sets {
                        for age in [0, 90_061] {
                            let c = cfg(o, credentials, m, h, e, age);
                            if Cors::from_config(&c).is_ok() {
                                out.push(c);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn requests() -> Vec<Req> {
    let origins: Vec<Vec<Vec<u8>>> = vec![
        vec![],
        vec![b"https://a.example".to_vec()],
        vec![b"http://b.example:8080".to_vec()],
        vec![b"https://[::1]:8443".to_vec()],
        vec![b"https://A.example".to_vec()],
        vec![b"https://a.example.evil".to_vec()],
        vec![b"null".to_vec()],
        vec![b"".to_vec()],
        // Only the first `Origin` counts.
        vec![
            b"https://evil.example".to_vec(),
            b"https://a.example".to_vec(),
        ],
        vec![
            b"https://a.example".to_vec(),
            b"https://evil.example".to_vec(),
        ],
    ];
    let mut out = Vec::new();
    for method in [
        Method::GET,
        Method::POST,
        Method::OPTIONS,
        Method::DELETE,
        Method::from_bytes(b"PURGE").unwrap(),
    ] {
        for o in &origins {
            for rm in [None, Some("GET"), Some("PUT")] {
                for rh in [None, Some("x-custom, x-other")] {
                    for mode in ["plain", "vary", "cors"] {
                        out.push(Req {
                            method: method.clone(),
                            origins: o.clone(),
                            request_method: rm,
                            request_headers: rh.map(str::to_owned),
                            mode,
                        });
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn same_as_tower_http_on_a_matrix() {
    let configs = configs();
    let requests = requests();
    // The matrix must cover what matters: a wildcard, credentials, empty lists.
    assert!(configs.iter().any(|c| c.allow_origins == ["*"]));
    assert!(configs.iter().any(|c| c.allow_credentials));
    assert!(configs.len() > 100, "{} configs", configs.len());
    for c in &configs {
        for r in &requests {
            compare(c, r).await;
        }
    }
}

#[tokio::test]
async fn same_as_tower_http_through_the_stack_config() {
    // The stack's own `[cors]` default (methods, headers, max-age) with one origin.
    let c = CorsConfig {
        allow_origins: vec!["https://app.example.com".into()],
        ..CorsConfig::default()
    };
    for r in requests() {
        compare(&c, &r).await;
    }
}

fn origin_strategy() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http://", "https://"]),
        prop::sample::select(vec![
            "a.example",
            "b.example",
            "A.example",
            "[::1]",
            "x-y.z",
        ]),
        prop::sample::select(vec!["", ":443", ":8080"]),
    )
        .prop_map(|(s, h, p)| format!("{s}{h}{p}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn same_as_tower_http_on_random_input(
        allowed in prop::collection::vec(origin_strategy(), 1..4),
        any_origin in any::<bool>(),
        credentials in any::<bool>(),
        methods in prop::collection::vec(prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "x-m"]), 0..4),
        headers in prop::collection::vec(prop::sample::select(vec!["content-type", "X-Api-Key", "*", "if-match"]), 0..3),
        expose in prop::collection::vec(prop::sample::select(vec!["x-request-id", "ETag"]), 0..3),
        max_age in 0u64..1_000_000,
        sent in prop::option::of(origin_strategy()),
        method in prop::sample::select(vec!["GET", "OPTIONS", "POST", "PUT", "x-m"]),
        mode in prop::sample::select(vec!["plain", "vary", "cors"]),
        acrh in prop::option::of("[a-z-]{1,12}(, [a-z-]{1,12}){0,2}"),
        acrm in prop::option::of(prop::sample::select(vec!["PUT", "GET", "x-m"])),
    ) {
        let origins: Vec<&str> = if any_origin { vec!["*"] } else { allowed.iter().map(String::as_str).collect() };
        let c = cfg(&origins, credentials, &methods, &headers, &expose, max_age);
        prop_assume!(Cors::from_config(&c).is_ok());
        let req = Req {
            method: Method::from_str(method).unwrap(),
            origins: sent.into_iter().map(String::into_bytes).collect(),
            request_method: acrm,
            request_headers: acrh,
            mode,
        };
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(compare(&c, &req));
    }
}

/// The errors (kind, field path, message) are the ones `ServerStack::from_config` gives for
/// the same `[cors]` section (while the stack builds tower-http's layer itself).
#[test]
fn same_errors_as_the_stack() {
    let bad = [
        cfg(&[], false, &["GET"], &[], &[], 600),
        cfg(&["*"], true, &["GET"], &[], &[], 600),
        cfg(&["*", "https://a.example"], false, &["GET"], &[], &[], 600),
        cfg(
            &["https://a.example", "https://a.example/path"],
            false,
            &["GET"],
            &[],
            &[],
            600,
        ),
        cfg(&["ftp://a.example"], false, &["GET"], &[], &[], 600),
        cfg(&["https://"], false, &["GET"], &[], &[], 600),
        cfg(
            &["https://a.example"],
            false,
            &["GET", "G T"],
            &[],
            &[],
            600,
        ),
        cfg(
            &["https://a.example"],
            true,
            &["GET"],
            &["content-type", "*"],
            &[],
            600,
        ),
        cfg(
            &["https://a.example"],
            false,
            &["GET"],
            &["bad header"],
            &[],
            600,
        ),
        cfg(
            &["https://a.example"],
            false,
            &["GET"],
            &[],
            &["ok", "b\u{e9}"],
            600,
        ),
    ];
    // The setting each one names (the stack now builds its CORS with `Cors::from_config`, so
    // the paths are pinned here, not compared with a second implementation).
    let fields = [
        "cors.allow_origins",
        "cors.allow_origins",
        "cors.allow_origins",
        "cors.allow_origins[1]",
        "cors.allow_origins[0]",
        "cors.allow_origins[0]",
        "cors.allow_methods[1]",
        "cors.allow_headers",
        "cors.allow_headers[0]",
        "cors.expose_headers[1]",
    ];
    assert_eq!(bad.len(), fields.len());
    for (c, field) in bad.into_iter().zip(fields) {
        let ours = Cors::from_config(&c).expect_err("refused");
        assert_eq!(ours.field(), field, "{c:?}: {ours}");
        let mut cfg = ServerConfig::default();
        cfg.cors = c.clone();
        let stack = ServerStack::from_config(&cfg).expect_err("refused by the stack");
        assert_eq!(ours, stack, "{c:?}");
    }
}

/// `*` as the methods or the exposed headers with credentials: tower-http panics when the
/// layer wraps a service (the stack's `cors_layer` let these through); here a typed error.
#[test]
fn wildcards_with_credentials_are_a_typed_error_not_a_panic() {
    for (c, field) in [
        (
            cfg(&["https://a.example"], true, &["*"], &[], &[], 600),
            "cors.allow_methods",
        ),
        (
            cfg(&["https://a.example"], true, &["GET"], &[], &["*"], 600),
            "cors.expose_headers",
        ),
    ] {
        let e = Cors::from_config(&c).expect_err("refused");
        assert_eq!(e.kind(), ConfigErrorKind::Unsafe);
        assert_eq!(e.field(), field);
        let layer = tower_http_layer(&c);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = layer.layer(tower::service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
        }))
        .is_err();
        assert!(
            panicked,
            "tower-http accepts {c:?} now: drop the extra check?"
        );
    }
}

#[test]
fn builder_refuses_unsafe_combinations() {
    let e = Cors::new()
        .allow_any_origin()
        .allow_credentials(true)
        .build()
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ConfigErrorKind::Unsafe, "cors.allow_origins")
    );
    let e = Cors::new()
        .allow_origins(["https://a.example"])
        .allow_any_header()
        .allow_credentials(true)
        .build()
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ConfigErrorKind::Unsafe, "cors.allow_headers")
    );
    let e = Cors::new().build().unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ConfigErrorKind::Missing, "cors.allow_origins")
    );
    let e = Cors::new()
        .allow_origins(["https://a.example/"])
        .build()
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ConfigErrorKind::Invalid, "cors.allow_origins[0]")
    );
    let ok = Cors::new()
        .allow_origins(["https://a.example", "http://localhost:3000"])
        .allow_methods([Method::GET, Method::PATCH])
        .allow_headers([header::AUTHORIZATION])
        .expose_headers([header::ETAG])
        .allow_credentials(true)
        .max_age(std::time::Duration::from_millis(1500))
        .build()
        .unwrap();
    assert!(ok.allows_origin(b"http://localhost:3000"));
    assert!(!ok.allows_origin(b"http://localhost:3001"));
    assert!(!ok.allows_any_origin());
}

#[tokio::test]
async fn on_an_axum_router() {
    fn assert_router_bounds<L>(_: &L)
    where
        L: Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request<Body>>>::Response: axum::response::IntoResponse + 'static,
        <L::Service as Service<Request<Body>>>::Future: Send + 'static,
    {
    }
    let layer = CorsLayer::new(
        Cors::new()
            .allow_origins(["https://app.example.com"])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .build()
            .unwrap(),
    );
    assert_router_bounds(&layer);
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(layer);

    // A preflight: 200, empty body, the router's 405 for OPTIONS never seen.
    let res = app
        .clone()
        .oneshot(
            Request::options("/")
                .header(header::ORIGIN, "https://app.example.com")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET,HEAD,POST"
    );
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert!(body.is_empty());

    let res = app
        .oneshot(
            Request::get("/")
                .header(header::ORIGIN, "https://app.example.com")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
        "x-request-id"
    );
    assert_eq!(res.headers()[header::VARY], "origin");
}
