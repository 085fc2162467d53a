//! Closed-state overhead of the circuit breaker, against tower-resilience's circuit breaker
//! (the Rust anchor, same policies) in one criterion group; and the cost of a new key in a
//! per-key registry at a 100 k cap, while it fills and once it is full (then every new key
//! evicts one), in a second group.

#[path = "support/mod.rs"]
mod support;

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use battlement::circuit_breaker::{
    Breaker, BreakerConfig, BreakerRegistry, CircuitBreakerLayer, Window,
};
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

/// Keys in the registry benches.
const CAP: usize = 100_000;

fn registry() -> BreakerRegistry<u64> {
    BreakerRegistry::new(BreakerConfig::default(), CAP).unwrap()
}

/// The cost of one new key at a 100 k cap: while the registry fills (no eviction), once it is
/// full of breakers nobody uses (a flood of distinct keys: each new one evicts one), and once
/// it is full of breakers all used since they were made (the worst case for the clock: every
/// new key looks at its whole eviction budget).
fn bench_registry(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker_registry");

    group.bench_function("new_key_filling", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let r = registry();
                let n = (iters - done).min(CAP as u64);
                let start = Instant::now();
                for k in 0..n {
                    black_box(r.breaker(&k));
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });

    // Every shard full (keys do not spread evenly over the shards).
    let full = registry();
    for k in 0..2 * CAP as u64 {
        let _ = full.breaker(&k);
    }
    let mut next = 2 * CAP as u64;
    group.bench_function("new_key_full", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(full.breaker(&next));
                next += 1;
            }
            start.elapsed()
        })
    });

    // Every breaker used since it was made: touched again (outside the measured time) every
    // 1,000 new keys, a few milliseconds after they were made.
    let busy = registry();
    for k in 0..2 * CAP as u64 {
        let _ = busy.breaker(&k);
    }
    let mut next = 2 * CAP as u64;
    group.bench_function("new_key_full_busy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                std::thread::sleep(Duration::from_millis(2));
                for k in next.saturating_sub(3 * CAP as u64)..next {
                    if let Some(b) = busy.get(&k) {
                        black_box(b);
                        let _ = busy.breaker(&k);
                    }
                }
                let n = (iters - done).min(1_000);
                let start = Instant::now();
                for _ in 0..n {
                    black_box(busy.breaker(&next));
                    next += 1;
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });
    group.finish();

    let us = |bench| {
        support::median_ns("circuit_breaker_registry", bench)
            .map_or_else(|| "-".to_owned(), |ns| format!("{:.3} us", ns / 1000.0))
    };
    println!(
        "[registry] one new key at a {CAP} cap: filling {}, full {}, full and busy {}",
        us("new_key_filling"),
        us("new_key_full"),
        us("new_key_full_busy"),
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench, bench_registry
}
criterion_main!(benches);
