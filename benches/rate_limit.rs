//! Rate limiting: our per-key decision against governor's `check_key` (1 key and 10,000 keys
//! round-robin), and our layer keyed by peer IP against tower_governor's `GovernorLayer` (peer
//! IP via `ConnectInfo`), over a bare `service_fn`. Quotas are generous: everything is admitted.

#[path = "support/mod.rs"]
mod support;

use std::{convert::Infallible, hint::black_box, net::SocketAddr, num::NonZeroU32};

use axum::{body::Body, extract::ConnectInfo};
use battlement::rate_limit::{HeaderStyle, Limit, PeerIp, Quota, RateLimitLayer, RateLimiter};
use criterion::criterion_main;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};

const RATE: NonZeroU32 = NonZeroU32::new(1_000_000_000).unwrap();
const KEYS: u64 = 10_000;

fn decision(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("rate_limit_decision");

    let mut i = 0u64;
    group.bench_function("baseline", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(i)
        })
    });

    let governor = governor::RateLimiter::keyed(governor::Quota::per_second(RATE));
    group.bench_function("governor_1", |b| {
        b.iter(|| assert!(governor.check_key(black_box(&7u64)).is_ok()))
    });
    let ours = RateLimiter::<u64>::keyed(Quota::per_second(RATE));
    group.bench_function("battlement_1", |b| {
        b.iter(|| assert!(ours.check_key(black_box(&7u64)).is_ok()))
    });

    let governor = governor::RateLimiter::keyed(governor::Quota::per_second(RATE));
    let mut i = 0u64;
    group.bench_function("governor_10k", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            assert!(governor.check_key(black_box(&i)).is_ok())
        })
    });
    let ours = RateLimiter::<u64>::keyed(Quota::per_second(RATE));
    let mut i = 0u64;
    group.bench_function("battlement_10k", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            assert!(ours.check_key(black_box(&i)).is_ok())
        })
    });

    group.finish();
    support::report(
        "rate_limit_decision",
        "baseline",
        &[
            ("battlement_1", "governor_1"),
            ("battlement_10k", "governor_10k"),
        ],
    );
}

async fn handler(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from("ok")))
}

fn run<S>(rt: &tokio::runtime::Runtime, b: &mut criterion::Bencher<'_>, svc: S)
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    let peer = ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40_000)));
    b.to_async(rt).iter(|| {
        let svc = svc.clone();
        async move {
            let mut req = Request::get("/").body(Body::empty()).unwrap();
            req.extensions_mut().insert(peer);
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            drop(black_box(res));
        }
    });
}

fn layer(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("rate_limit_layer");

    group.bench_function("bare", |b| run(&rt, b, service_fn(handler)));

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .expect("valid governor config");
    let theirs = GovernorLayer::new(config).layer(service_fn(handler));
    group.bench_function("tower_governor", |b| run(&rt, b, theirs.clone()));

    let limit = || Limit::new(PeerIp::new(), Quota::per_second(RATE));
    let ours = RateLimitLayer::new(limit()).layer(service_fn(handler));
    group.bench_function("battlement", |b| run(&rt, b, ours.clone()));
    let ours = RateLimitLayer::new(limit())
        .with_headers(HeaderStyle::None)
        .layer(service_fn(handler));
    group.bench_function("battlement_no_headers", |b| run(&rt, b, ours.clone()));

    group.finish();
    support::report(
        "rate_limit_layer",
        "bare",
        &[
            ("battlement", "tower_governor"),
            ("battlement_no_headers", "tower_governor"),
        ],
    );
}

fn benches() {
    let mut c = support::criterion();
    decision(&mut c);
    layer(&mut c);
}

criterion_main!(benches);
