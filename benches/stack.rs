//! The full default server stack against the same protection assembled from tower-http and
//! tower_governor: request id (set + propagate), 12 `SetResponseHeader` layers with helmet's
//! values, `RequestBodyLimit`, and a `GovernorLayer` keyed by peer IP. Quotas are generous:
//! everything is admitted. The request carries `ConnectInfo`, as `axum::serve` gives it.

#[path = "support/mod.rs"]
mod support;

use std::{
    convert::Infallible,
    future::{Ready, ready},
    net::SocketAddr,
    task::{Context, Poll},
};

use axum::{body::Body, extract::ConnectInfo};
use battlement::stack::{ServerConfig, ServerStack};
use std::hint::black_box;

use criterion::criterion_main;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

const GROUP: &str = "stack";

/// The one API key of the keyed cases (a macro, for `concat!`).
macro_rules! api_key {
    () => {
        "bench-key-0123456789abcdef"
    };
}

use support::helmet::helmet_layers;

/// A handler that accepts any request body (each stack hands it its own body type).
#[derive(Clone, Copy)]
struct Handler;

impl<B> Service<Request<B>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::new(Body::from("ok"))))
    }
}

fn bench<S, RB>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    svc: S,
) where
    S: Service<Request<Body>, Response = Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
{
    bench_with(group, rt, id, svc, plain_get);
}

/// `GET /`, as every case but the CORS and keyed ones sends it.
fn plain_get() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

/// `GET /` from the one allowed CORS origin.
fn cors_get() -> Request<Body> {
    Request::get("/")
        .header(http::header::ORIGIN, ORIGIN)
        .body(Body::empty())
        .unwrap()
}

/// `GET /` with a valid API key as a bearer token.
fn keyed_get() -> Request<Body> {
    Request::get("/")
        .header(http::header::AUTHORIZATION, concat!("Bearer ", api_key!()))
        .body(Body::empty())
        .unwrap()
}

/// The one CORS origin of the CORS cases.
const ORIGIN: &str = "https://app.example.com";

fn bench_with<S, RB>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    svc: S,
    request: fn() -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
{
    let peer = ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40_000)));
    // `BATTLEMENT_STACK_PROFILE=<id>[:<iterations>]`: no criterion, just that many requests
    // through `<id>` (for `valgrind --tool=callgrind`), and the size of its response future.
    if let Some(profile) = std::env::var_os("BATTLEMENT_STACK_PROFILE") {
        let profile = profile.to_string_lossy().into_owned();
        let (name, n) = profile.split_once(':').unwrap_or((&profile, "100000"));
        if name == id {
            let n: u64 = n.parse().expect("iterations");
            println!(
                "{id}: service {} bytes, response future {} bytes",
                std::mem::size_of::<S>(),
                std::mem::size_of::<S::Future>()
            );
            rt.block_on(async {
                for _ in 0..n {
                    let mut req = request();
                    req.extensions_mut().insert(peer);
                    let res = svc.clone().oneshot(req).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    drop(black_box(res));
                }
            });
        }
        return;
    }
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            let svc = svc.clone();
            async move {
                let mut req = request();
                req.extensions_mut().insert(peer);
                let res = svc.oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                drop(black_box(res));
            }
        })
    });
}

/// Generous quotas so that every request is admitted; otherwise the defaults.
const DEFAULT: &str = r#"
[security_headers]
preset = "web"
[rate_limit.per_ip]
requests = 1000000000
per = "1s"
burst = 1000000000
"#;

/// The same protection as the anchor, nothing more: request id, headers, body limit, per-IP
/// limit (without rate-limit headers, which tower_governor does not send by default).
const SAME: &str = r#"
[trace]
enabled = false
[catch_panic]
enabled = false
[timeout]
enabled = false
[security_headers]
preset = "web"
[rate_limit]
headers = "none"
[rate_limit.per_ip]
requests = 1000000000
per = "1s"
burst = 1000000000
"#;

/// The defaults plus CORS for one origin (the requests come from it).
const CORS: &str = r#"
[cors]
allow_origins = ["https://app.example.com"]
"#;

/// The defaults plus API keys (one principal, one key: the requests carry it) and a limit per
/// principal.
const KEYED: &str = r#"
[rate_limit.per_principal]
requests = 1000000000
per = "1s"
burst = 1000000000
[api_key]
[[api_key.principals]]
id = "bench"
keys = ["KEY_HASH"]
"#;

/// A generous tower_governor config for any key extractor.
fn governor_config<K: tower_governor::key_extractor::KeyExtractor>(
    key: K,
) -> tower_governor::governor::GovernorConfig<K, governor::middleware::NoOpMiddleware> {
    GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(key)
        .finish()
        .expect("valid governor config")
}

/// The bearer token of a request, as the keyed anchor's second governor keys it.
#[derive(Clone, Copy)]
struct BearerKey;

impl tower_governor::key_extractor::KeyExtractor for BearerKey {
    type Key = Vec<u8>;

    fn extract<T>(&self, req: &Request<T>) -> Result<Vec<u8>, tower_governor::GovernorError> {
        bearer(req)
            .map(<[u8]>::to_vec)
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

fn bearer<T>(req: &Request<T>) -> Option<&[u8]> {
    req.headers()
        .get(http::header::AUTHORIZATION)?
        .as_bytes()
        .strip_prefix(b"Bearer ")
}

/// The anchor's check of hashed API keys: tower-http's `ValidateRequestHeader` with the
/// SHA-256 of the bearer token looked up in a set of hashes. (The `Err` is a whole response:
/// tower-http's `ValidateRequest` is shaped so.)
#[allow(clippy::result_large_err)]
fn validate_hashed_key<B>(
    hashes: std::sync::Arc<std::collections::HashSet<[u8; 32]>>,
) -> impl FnMut(&mut Request<B>) -> Result<(), Response<Body>> + Clone {
    use sha2::Digest;
    move |req: &mut Request<B>| match bearer(req) {
        Some(key) if hashes.contains(&<[u8; 32]>::from(sha2::Sha256::digest(key))) => Ok(()),
        _ => Err(Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::empty())
            .unwrap()),
    }
}

fn stack(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group(GROUP);

    bench(&mut group, &rt, "bare", Handler);

    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .expect("valid governor config");
    let anchor = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(helmet_layers())
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(GovernorLayer::new(governor))
        .service(Handler);
    bench(&mut group, &rt, "tower_http_governor", anchor);

    let config = ServerConfig::from_toml_str(DEFAULT).expect("valid config");
    let ours = ServerStack::from_config(&config)
        .expect("valid stack")
        .layer(Handler);
    bench(&mut group, &rt, "battlement_default", ours);

    let config = ServerConfig::from_toml_str(SAME).expect("valid config");
    let ours = ServerStack::from_config(&config)
        .expect("valid stack")
        .layer(Handler);
    bench(&mut group, &rt, "battlement_same", ours);

    // The anchor and the default stack, each with CORS for one origin.
    let anchor_cors = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(helmet_layers())
        .layer(
            tower_http::cors::CorsLayer::new().allow_origin(http::HeaderValue::from_static(ORIGIN)),
        )
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(GovernorLayer::new(governor_config(
            tower_governor::key_extractor::PeerIpKeyExtractor,
        )))
        .service(Handler);
    bench_with(
        &mut group,
        &rt,
        "tower_http_governor_cors",
        anchor_cors,
        cors_get,
    );
    let config = ServerConfig::from_toml_str(&format!("{DEFAULT}{CORS}")).expect("valid config");
    let ours = ServerStack::from_config(&config)
        .expect("valid stack")
        .layer(Handler);
    bench_with(&mut group, &rt, "battlement_cors", ours, cors_get);

    // The anchor with hashed bearer keys and a second governor per key, and the default stack
    // with `[api_key]` and a per-principal limit; every request carries the valid key.
    let hashes = std::sync::Arc::new(std::collections::HashSet::from([<[u8; 32]>::from(
        <sha2::Sha256 as sha2::Digest>::digest(api_key!()),
    )]));
    let anchor_keyed = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(helmet_layers())
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(GovernorLayer::new(governor_config(
            tower_governor::key_extractor::PeerIpKeyExtractor,
        )))
        .layer(
            tower_http::validate_request::ValidateRequestHeaderLayer::custom(validate_hashed_key(
                hashes,
            )),
        )
        .layer(GovernorLayer::new(governor_config(BearerKey)))
        .service(Handler);
    bench_with(
        &mut group,
        &rt,
        "tower_http_governor_keyed",
        anchor_keyed,
        keyed_get,
    );
    let keyed = format!("{DEFAULT}{KEYED}").replace(
        "KEY_HASH",
        &battlement::auth::api_key::hash_key(api_key!()).to_hex(),
    );
    let config = ServerConfig::from_toml_str(&keyed).expect("valid config");
    let ours = ServerStack::from_config(&config)
        .expect("valid stack")
        .layer(Handler);
    bench_with(&mut group, &rt, "battlement_keyed", ours, keyed_get);

    // Each piece alone, to see where the time goes: `BATTLEMENT_BENCH_BREAKDOWN=1 cargo bench
    // --bench stack`.
    if std::env::var_os("BATTLEMENT_BENCH_BREAKDOWN").is_some()
        || std::env::var_os("BATTLEMENT_STACK_PROFILE").is_some()
    {
        breakdown(&mut group, &rt);
    }
    group.finish();
    if std::env::var_os("BATTLEMENT_STACK_PROFILE").is_some() {
        return;
    }
    support::report(
        GROUP,
        "bare",
        &[
            ("battlement_default", "tower_http_governor"),
            ("battlement_same", "tower_http_governor"),
            ("battlement_cors", "tower_http_governor"),
            ("battlement_cors", "tower_http_governor_cors"),
            ("battlement_keyed", "tower_http_governor"),
            ("battlement_keyed", "tower_http_governor_keyed"),
        ],
    );
}

fn breakdown(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
) {
    use std::time::Duration;

    use battlement::{
        body_limit::BodyLimitLayer,
        net::TrustedProxies,
        rate_limit::{ClientIp, HeaderStyle, Limit, Quota, RateLimitLayer},
        request_id::SetRequestIdLayer,
        security_headers::SecurityHeadersLayer,
        stack::{CatchPanicLayer, ObserveLayer, RequestTimeoutLayer},
    };

    // On an axum `Router` (which boxes each route's future, as in the end-to-end test).
    // `with_state(())` turns the handlers into routes once, as `axum::serve` does through
    // `into_make_service`; without it axum rebuilds each route (and applies its layers) on
    // every request.
    let route = || axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    bench(group, rt, "router_bare", route().with_state(()));
    let config = ServerConfig::from_toml_str(DEFAULT).expect("valid config");
    let stack = ServerStack::from_config(&config).expect("valid stack");
    bench(
        group,
        rt,
        "router_default",
        stack.wrap(route()).with_state(()),
    );

    let none = || {
        ServerStack::new()
            .request_id(None)
            .observe(None)
            .catch_panic(None)
            .security_headers(None)
            .body_limit(None)
            .rate_limit_ip(None)
            .timeout(None)
    };
    bench(group, rt, "none", none().layer(Handler));
    bench(
        group,
        rt,
        "only_request_id",
        none().request_id(SetRequestIdLayer::new()).layer(Handler),
    );
    bench(
        group,
        rt,
        "only_headers",
        none()
            .security_headers(SecurityHeadersLayer::web())
            .layer(Handler),
    );
    bench(
        group,
        rt,
        "only_body_limit",
        none()
            .body_limit(BodyLimitLayer::new(1 << 20))
            .layer(Handler),
    );
    let quota = Quota::try_new(1_000_000_000, Duration::from_secs(1))
        .and_then(|q| q.try_with_burst(1_000_000_000))
        .expect("valid quota");
    let limit = RateLimitLayer::new(Limit::new(ClientIp::new(TrustedProxies::none()), quota));
    bench(
        group,
        rt,
        "only_rate_limit",
        none().rate_limit_ip(limit.clone()).layer(Handler),
    );
    bench(
        group,
        rt,
        "only_rate_limit_no_headers",
        none()
            .rate_limit_ip(limit.with_headers(HeaderStyle::None))
            .layer(Handler),
    );
    bench(
        group,
        rt,
        "only_timeout",
        none()
            .timeout(RequestTimeoutLayer::new(Duration::from_secs(30)))
            .layer(Handler),
    );
    bench(
        group,
        rt,
        "only_observe_catch_panic",
        none()
            .observe(ObserveLayer::new([], TrustedProxies::none(), false, true))
            .catch_panic(CatchPanicLayer::new())
            .layer(Handler),
    );
}

fn future_size<L>(name: &str)
where
    L: Layer<Handler>,
    L::Service: Service<Request<Body>>,
{
    println!(
        "{name}: response future {} bytes",
        std::mem::size_of::<<L::Service as Service<Request<Body>>>::Future>()
    );
}

/// The size of each layer's response future around the handler.
fn future_sizes() {
    use battlement::{
        auth::api_key::ApiKeyLayer,
        body_limit::BodyLimitLayer,
        https::HttpsRedirectLayer,
        rate_limit::RateLimitLayer,
        request_id::SetRequestIdLayer,
        security_headers::SecurityHeadersLayer,
        signing::VerifySignatureLayer,
        stack::{
            CatchPanicLayer, ObserveLayer, RequestTimeoutLayer, ServerBreakerLayer,
            observe::RecordPrincipalLayer,
        },
    };
    future_size::<tower::layer::util::Identity>("handler");
    future_size::<SetRequestIdLayer>("request_id");
    future_size::<ObserveLayer>("observe");
    future_size::<CatchPanicLayer>("catch_panic");
    future_size::<SecurityHeadersLayer>("security_headers");
    future_size::<HttpsRedirectLayer>("https");
    future_size::<tower_http::cors::CorsLayer>("cors");
    future_size::<BodyLimitLayer>("body_limit");
    future_size::<RateLimitLayer>("rate_limit");
    future_size::<ApiKeyLayer>("api_key");
    future_size::<VerifySignatureLayer>("signing");
    future_size::<RecordPrincipalLayer>("record_principal");
    future_size::<ServerBreakerLayer>("circuit_breaker");
    future_size::<RequestTimeoutLayer>("timeout");
}

fn benches() {
    if std::env::var_os("BATTLEMENT_STACK_PROFILE").is_some() {
        future_sizes();
    }
    let mut c = support::criterion();
    stack(&mut c);
}

criterion_main!(benches);
