//! Success-path overhead of the retry layer against tower's `Retry` with a minimal policy.

#[path = "support/mod.rs"]
mod support;

use std::{convert::Infallible, future::Ready, hint::black_box};

use battlement::retry::{ReplayBody, RetryLayer};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, retry::Policy};

/// The least a tower `Policy` must do for HTTP: clone the request, never retry a success.
#[derive(Clone)]
struct CloneRequest;

impl<E> Policy<Request<Full<Bytes>>, Response<Full<Bytes>>, E> for CloneRequest {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Full<Bytes>>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(res) if !res.status().is_server_error() => None,
            _ => Some(std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

fn ok<B>(_req: Request<B>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn request() -> Request<Full<Bytes>> {
    Request::get("http://upstream.internal/orders/42")
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

fn bench(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("retry");

    let bare = tower::service_fn(ok::<Full<Bytes>>);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            // `ServiceFn` of a fn item is `Copy`: using it by value is the clone.
            let res = bare.oneshot(request()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res);
        })
    });

    let theirs =
        tower::retry::RetryLayer::new(CloneRequest).layer(tower::service_fn(ok::<Full<Bytes>>));
    group.bench_function("tower_retry", |b| {
        b.to_async(&rt).iter(|| async {
            let res = theirs.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res);
        })
    });

    let ours = RetryLayer::default().layer(tower::service_fn(ok::<ReplayBody<Full<Bytes>>>));
    group.bench_function("battlement", |b| {
        b.to_async(&rt).iter(|| async {
            let res = ours.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res);
        })
    });

    group.finish();
    support::report("retry", "bare", &[("battlement", "tower_retry")]);
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
