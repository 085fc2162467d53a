//! Request-id overhead: our `SetRequestIdLayer` against tower-http's
//! `SetRequestIdLayer::x_request_id(MakeRequestUuid)` + `PropagateRequestIdLayer::x_request_id()`,
//! over a bare `service_fn` handler; plus id generation against `Uuid::new_v4()`.
//!
//! `*_incoming` send a valid `x-request-id` (kept by both); their baseline is `bare_incoming`,
//! which pays for building the request header too.
//!
//! `floor` is the least any layer can do for the same job: it writes one prebuilt id (no
//! generation, no validation, no span, no task-local) into the request's header and extensions
//! and the response's header and extensions, the four writes the bench checks both layers make.
//! Its overhead is what the `http` types' maps cost (an allocation or two per map on these
//! requests, which arrive with none), the part of tower-http's overhead that no implementation
//! of the job avoids; the ratio `floor` / `tower_http` bounds from below what `battlement` can
//! reach.

#[path = "support/mod.rs"]
mod support;

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::Pin,
    task::{Context, Poll, ready},
};

use battlement::request_id::{DefaultMakeRequestId, SetRequestIdLayer};
use battlement::request_id::{RequestId, X_REQUEST_ID};
use bytes::Bytes;
use criterion::criterion_main;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer as TowerSetRequestIdLayer,
};

type Body = Full<Bytes>;

async fn handler(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The four writes of the job and nothing else (see the module docs).
#[derive(Clone)]
struct Floor<S> {
    inner: S,
    id: RequestId,
}

impl<S, B, R> tower::Service<Request<B>> for Floor<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = self.id.clone();
        req.headers_mut()
            .insert(X_REQUEST_ID, id.header_value().clone());
        req.extensions_mut().insert(id.clone());
        FloorFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    struct FloorFuture<F> {
        #[pin]
        inner: F,
        id: Option<RequestId>,
    }
}

impl<F, R, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            res.headers_mut()
                .insert(X_REQUEST_ID, id.header_value().clone());
            res.extensions_mut().insert(id);
        }
        Poll::Ready(Ok(res))
    }
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
    let floor = Floor {
        inner: service_fn(handler),
        id: RequestId::new(HeaderValue::from_static(
            "0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11",
        ))
        .expect("a valid id"),
    };
    // Both do the whole job: an id on the response, header and extension (and so does the floor).
    rt.block_on(async {
        let res = answer(floor.clone(), false).await;
        assert!(res.headers().contains_key("x-request-id"));
        assert!(res.extensions().get::<RequestId>().is_some());
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
        profile(&rt, "floor", &floor, false);
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
    group.bench_function("floor", |b| run(&rt, b, floor.clone(), false));

    group.finish();
    support::report(
        "request_id",
        "bare",
        &[
            ("battlement", "tower_http"),
            ("floor", "tower_http"),
            ("battlement", "floor"),
        ],
    );
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
