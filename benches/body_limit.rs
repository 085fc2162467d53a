//! `body_limit` against tower-http's `RequestBodyLimit`, and the `https` redirect layer on an
//! HTTPS request (its pass-through cost) against no layer.
//!
//! Run: `cargo bench --bench body_limit`.

#[path = "support/mod.rs"]
mod support;

use std::{
    convert::Infallible,
    hint::black_box,
    pin::Pin,
    task::{Context, Poll},
};

use battlement::{body_limit::BodyLimitLayer, https::HttpsRedirectLayer, net::Scheme};
use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::limit::RequestBodyLimitLayer;

const LIMIT: usize = 1024 * 1024;
static KIB: [u8; 1024] = [b'x'; 1024];

/// One chunk and no size hint: what a chunked upload looks like to the server.
struct Chunked(Option<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }
}

/// The handler: reads the whole body, answers 200 with an empty body.
async fn read_body<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let body = req.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 1024);
    Ok(Response::new(Full::default()))
}

fn sized() -> Request<Full<Bytes>> {
    Request::post("/upload")
        .header(header::CONTENT_LENGTH, "1024")
        .body(Full::new(Bytes::from_static(&KIB)))
        .expect("request")
}

fn chunked() -> Request<Chunked> {
    Request::post("/upload")
        .body(Chunked(Some(Bytes::from_static(&KIB))))
        .expect("request")
}

macro_rules! bench_oneshot {
    ($group:expr, $rt:expr, $id:expr, $svc:expr, $req:expr) => {{
        let svc = $svc;
        // `BATTLEMENT_PROFILE=<id>:<n>`: `n` requests for callgrind, no criterion.
        if support::profiling() {
            if let Some(n) = support::profile_iterations($id) {
                $rt.block_on(async {
                    for _ in 0..n {
                        let res = svc.clone().oneshot($req).await.expect("infallible");
                        assert_eq!(res.status(), StatusCode::OK);
                        drop(black_box(res));
                    }
                });
            }
        } else {
            $group.bench_function($id, |b| {
                b.to_async(&$rt).iter(|| {
                    let svc = svc.clone();
                    async move {
                        let res = svc.oneshot($req).await.expect("infallible");
                        assert_eq!(res.status(), StatusCode::OK);
                        drop(black_box(res));
                    }
                })
            });
        }
    }};
}

fn body_limit(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("body_limit");
    bench_oneshot!(group, rt, "no_limit", service_fn(read_body), sized());
    bench_oneshot!(
        group,
        rt,
        "tower_http",
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(LIMIT))
            .service_fn(read_body),
        sized()
    );
    bench_oneshot!(
        group,
        rt,
        "battlement",
        ServiceBuilder::new()
            .layer(BodyLimitLayer::new(LIMIT as u64))
            .service_fn(read_body),
        sized()
    );
    bench_oneshot!(
        group,
        rt,
        "no_limit_chunked",
        service_fn(read_body),
        chunked()
    );
    bench_oneshot!(
        group,
        rt,
        "tower_http_chunked",
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(LIMIT))
            .service_fn(read_body),
        chunked()
    );
    bench_oneshot!(
        group,
        rt,
        "battlement_chunked",
        ServiceBuilder::new()
            .layer(BodyLimitLayer::new(LIMIT as u64))
            .service_fn(read_body),
        chunked()
    );
    group.finish();
    if support::profiling() {
        return;
    }
    support::report("body_limit", "no_limit", &[("battlement", "tower_http")]);
    support::report(
        "body_limit",
        "no_limit_chunked",
        &[("battlement_chunked", "tower_http_chunked")],
    );
}

async fn ok<B>(_: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

fn https_request() -> Request<Full<Bytes>> {
    let mut req = Request::get("/orders?page=2")
        .header(header::HOST, "www.example.com")
        .body(Full::default())
        .expect("request");
    req.extensions_mut().insert(Scheme::Https);
    req
}

fn https(c: &mut Criterion) {
    let rt = support::runtime();
    let layer = HttpsRedirectLayer::new(["example.com", "*.example.com"])
        .expect("hosts")
        .exempt_path("/healthz")
        .expect("path");
    let mut group = c.benchmark_group("https");
    bench_oneshot!(group, rt, "bare", service_fn(ok), https_request());
    bench_oneshot!(
        group,
        rt,
        "battlement",
        ServiceBuilder::new().layer(layer.clone()).service_fn(ok),
        https_request()
    );
    // The other path: a plain request answered with a 301 (the handler never runs).
    let svc = ServiceBuilder::new().layer(layer).service_fn(ok);
    group.bench_function("battlement_redirect", |b| {
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move {
                let req = Request::get("/orders?page=2")
                    .header(header::HOST, "www.example.com")
                    .body(Full::<Bytes>::default())
                    .expect("request");
                let res = svc.oneshot(req).await.expect("infallible");
                assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
                drop(black_box(res));
            }
        })
    });
    group.finish();
    let base = support::median_ns("https", "bare");
    for id in ["battlement", "battlement_redirect"] {
        match (base, support::median_ns("https", id)) {
            (Some(base), Some(ours)) => println!(
                "[ratio] https: {id} {ours:.0} ns (+{:.0}) over bare {base:.0} ns -> total ratio {:.3} (no anchor)",
                ours - base,
                ours / base
            ),
            _ => println!("[ratio] https: {id} or bare has no estimate (filtered out?)"),
        }
    }
}

fn main() {
    let mut c = support::criterion();
    body_limit(&mut c);
    if support::profiling() {
        return;
    }
    https(&mut c);
    c.final_summary();
}
