//! Request-id overhead: our `SetRequestIdLayer` against tower-http's
//! `SetRequestIdLayer::x_request_id(MakeRequestUuid)` + `PropagateRequestIdLayer::x_request_id()`,
//! over a bare `service_fn` handler; plus id generation against `Uuid::new_v4()`.
//!
//! `*_incoming` send a valid `x-request-id` (kept by both); their baseline is `bare_incoming`,
//! which pays for building the request header too.

#[path = "support/mod.rs"]
mod support;

use std::{convert::Infallible, hint::black_box};

use battlement::request_id::{DefaultMakeRequestId, SetRequestIdLayer};
use bytes::Bytes;
use criterion::criterion_main;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer as TowerSetRequestIdLayer,
};

type Body = Full<Bytes>;

async fn handler(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn run<S>(rt: &tokio::runtime::Runtime, b: &mut criterion::Bencher<'_>, svc: S, incoming: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    b.to_async(rt).iter(|| {
        let svc = svc.clone();
        async move {
            let mut req = Request::builder().uri("/");
            if incoming {
                req = req.header("x-request-id", "0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11");
            }
            let req = req.body(Full::new(Bytes::new())).unwrap();
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            drop(black_box(res));
        }
    });
}

fn request_id(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("request_id");

    let bare = service_fn(handler);
    group.bench_function("bare", |b| run(&rt, b, bare, false));
    group.bench_function("bare_incoming", |b| run(&rt, b, bare, true));

    let tower = PropagateRequestIdLayer::x_request_id()
        .layer(TowerSetRequestIdLayer::x_request_id(MakeRequestUuid).layer(service_fn(handler)));
    group.bench_function("tower_http", |b| run(&rt, b, tower.clone(), false));
    group.bench_function("tower_http_incoming", |b| run(&rt, b, tower.clone(), true));

    let ours = SetRequestIdLayer::new().layer(service_fn(handler));
    group.bench_function("battlement", |b| run(&rt, b, ours.clone(), false));
    group.bench_function("battlement_incoming", |b| run(&rt, b, ours.clone(), true));

    group.finish();
    support::report("request_id", "bare", &[("battlement", "tower_http")]);
    support::report(
        "request_id",
        "bare_incoming",
        &[("battlement_incoming", "tower_http_incoming")],
    );

    let mut group = c.benchmark_group("request_id_generate");
    group.bench_function("uuid_new_v4", |b| {
        b.iter(|| black_box(uuid::Uuid::new_v4().hyphenated().to_string()))
    });
    group.bench_function("battlement_v7", |b| {
        b.iter(|| black_box(DefaultMakeRequestId::generate()))
    });
    group.finish();
}

fn benches() {
    let mut c = support::criterion();
    request_id(&mut c);
}

criterion_main!(benches);
