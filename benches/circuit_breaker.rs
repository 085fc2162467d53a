//! Closed-state overhead of the circuit breaker, against tower-resilience's circuit breaker
//! (the Rust anchor, same policies) in one criterion group.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;

use battlement::circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, Window};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, ServiceExt, service_fn};

type Req = Request<Empty<Bytes>>;

async fn ok(_req: Req) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

fn bench(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("circuit_breaker");

    // Run the same request loop on every service.
    macro_rules! run {
        ($id:literal, $svc:expr) => {{
            let svc = $svc;
            group.bench_function($id, |b| {
                b.to_async(&rt).iter(|| {
                    let svc = svc.clone();
                    async move {
                        let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
                        let res = svc.oneshot(req).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                    }
                })
            });
        }};
    }

    run!("bare", service_fn(ok));

    // Trip after 5 consecutive failures (battlement's default), closed.
    let theirs = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .build()
        .unwrap();
    run!("tower_resilience", theirs.layer(service_fn(ok)));
    let ours =
        CircuitBreakerLayer::new(Breaker::new(BreakerConfig::consecutive_failures(5)).unwrap());
    run!("battlement", ours.layer(service_fn(ok)));

    // Failure rate 50 % over the last 100 calls (tower-resilience's default), closed.
    let theirs = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap();
    run!("tower_resilience_window", theirs.layer(service_fn(ok)));
    let ours = CircuitBreakerLayer::new(
        Breaker::new(BreakerConfig::failure_rate(Window::count(100), 50)).unwrap(),
    );
    run!("battlement_window", ours.layer(service_fn(ok)));

    group.finish();
    support::report(
        "circuit_breaker",
        "bare",
        &[
            ("battlement", "tower_resilience"),
            ("battlement_window", "tower_resilience_window"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
