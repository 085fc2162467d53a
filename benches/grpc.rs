//! The default server stack around a real tonic unary call (the health service's `Check`)
//! versus the same call bare, in process: the request is a gRPC frame, the response body (its
//! message and trailers) is read whole. Prints the overhead and the total ratio.

#[path = "support/mod.rs"]
mod support;

use std::{hint::black_box, net::SocketAddr};

use axum::{Router, body::Body, extract::ConnectInfo};
use battlement::stack::ServerStack;
use criterion::criterion_main;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const GROUP: &str = "grpc";

/// `Check` with an empty service name: a 5-byte gRPC frame of an empty message.
fn check() -> Request<Body> {
    let mut req = Request::post("/grpc.health.v1.Health/Check")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Body::from(&[0u8, 0, 0, 0, 0][..]))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40_000))));
    req
}

fn health() -> Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::service::Routes::new(health).into_axum_router()
}

fn bench(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let bare = health();
    // The default stack with a quota no bench run reaches.
    let cfg = battlement::stack::ServerConfig::from_toml_str(
        "[rate_limit.per_ip]\nrequests = 1000000000\nper = \"1s\"\nburst = 1000000000\n",
    )
    .unwrap();
    let stacked = ServerStack::from_config(&cfg).unwrap().wrap(health());
    let mut group = c.benchmark_group(GROUP);
    for (id, app) in [("bare", bare), ("battlement", stacked)] {
        // A sanity check outside the measurement: the call succeeds with grpc-status 0.
        rt.block_on(async {
            let res = app.clone().oneshot(check()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = res.into_body().collect().await.unwrap();
            let trailers = body.trailers().cloned().unwrap_or_default();
            assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{id}");
        });
        group.bench_function(id, |b| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                async move {
                    let res = app.oneshot(check()).await.unwrap();
                    black_box(res.into_body().collect().await.unwrap());
                }
            });
        });
    }
    group.finish();
    match (
        support::median_ns(GROUP, "battlement"),
        support::median_ns(GROUP, "bare"),
    ) {
        (Some(o), Some(b)) => println!(
            "[ratio] {GROUP}: battlement {o:.0} ns vs bare {b:.0} ns -> overhead +{:.0} ns, \
             total ratio {:.3}",
            o - b,
            o / b
        ),
        _ => println!("[ratio] {GROUP}: no estimate (filtered out?)"),
    }
}

fn benches() {
    let mut c = support::criterion();
    bench(&mut c);
}

criterion_main!(benches);
