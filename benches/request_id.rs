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

async fn answer<S>(svc: S, incoming: bool) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let mut req = Request::builder().uri("/");
    if incoming {
        req = req.header("x-request-id", "0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11");
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    svc.oneshot(req).await.unwrap()
}

async fn once<S>(svc: S, incoming: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = answer(svc, incoming).await;
    assert_eq!(res.status(), StatusCode::OK);
    drop(black_box(res));
}

fn run<S>(rt: &tokio::runtime::Runtime, b: &mut criterion::Bencher<'_>, svc: S, incoming: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    b.to_async(rt).iter(|| once(svc.clone(), incoming));
}

/// `BATTLEMENT_PROFILE=<bench>:<n>` (see `support::profile_iterations`): `n` requests through
/// the service of that bench, for callgrind.
fn profile<S>(rt: &tokio::runtime::Runtime, name: &str, svc: &S, incoming: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    if let Some(n) = support::profile_iterations(name) {
        rt.block_on(async {
            for _ in 0..n {
                once(svc.clone(), incoming).await;
            }
        });
    }
}

fn request_id(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let bare = service_fn(handler);
    // `SetRequestId` outside `PropagateRequestId`, as tower-http documents it (the order of
    // `ServiceBuilder::new().layer(set).layer(propagate)`): the other way round, `Propagate`
    // sees the request before the id is set and answers without one.
    let tower = TowerSetRequestIdLayer::x_request_id(MakeRequestUuid)
        .layer(PropagateRequestIdLayer::x_request_id().layer(service_fn(handler)));
    let ours = SetRequestIdLayer::new().layer(service_fn(handler));
    // Both do the whole job: an id on the response, header and extension.
    rt.block_on(async {
        for incoming in [false, true] {
            let (a, b) = (
                answer(tower.clone(), incoming).await,
                answer(ours.clone(), incoming).await,
            );
            assert!(
                a.headers().contains_key("x-request-id"),
                "tower-http: no id"
            );
            assert!(
                a.extensions()
                    .get::<tower_http::request_id::RequestId>()
                    .is_some()
            );
            assert!(
                b.headers().contains_key("x-request-id"),
                "battlement: no id"
            );
            assert!(
                b.extensions()
                    .get::<battlement::request_id::RequestId>()
                    .is_some()
            );
        }
    });
    if support::profiling() {
        profile(&rt, "bare", &bare, false);
        profile(&rt, "bare_incoming", &bare, true);
        profile(&rt, "tower_http", &tower, false);
        profile(&rt, "battlement", &ours, false);
        profile(&rt, "tower_http_incoming", &tower, true);
        profile(&rt, "battlement_incoming", &ours, true);
        return;
    }

    let mut group = c.benchmark_group("request_id");
    group.bench_function("bare", |b| run(&rt, b, bare, false));
    group.bench_function("bare_incoming", |b| run(&rt, b, bare, true));
    group.bench_function("tower_http", |b| run(&rt, b, tower.clone(), false));
    group.bench_function("tower_http_incoming", |b| run(&rt, b, tower.clone(), true));
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
