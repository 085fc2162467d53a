//! Security headers: ours (one precomputed layer) against 12 stacked tower-http
//! `SetResponseHeaderLayer::overriding` layers with helmet's values.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;

use battlement::security_headers::{ContentSecurityPolicy, SecurityHeaders, SecurityHeadersLayer};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const GROUP: &str = "security_headers";

use support::helmet::helmet_layers;

async fn handler(_req: Request<Empty<Bytes>>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

/// A handler that sets `Content-Type`, as real ones do.
async fn typed(_req: Request<Empty<Bytes>>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut res = Response::new(Empty::new());
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(res)
}

fn bench<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    uri: &'static str,
    svc: S,
) where
    S: Service<Request<Empty<Bytes>>, Response = Response<Empty<Bytes>>, Error = Infallible>
        + Clone,
{
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            let svc = svc.clone();
            async move {
                let req = Request::get(uri).body(Empty::new()).unwrap();
                let res = svc.oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                drop(res);
            }
        })
    });
}

fn security_headers(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group(GROUP);

    bench(&mut group, &rt, "bare", "/", service_fn(handler));

    let tower_http = ServiceBuilder::new()
        .layer(helmet_layers())
        .service_fn(handler);
    bench(&mut group, &rt, "tower_http_12", "/", tower_http);

    let ours = ServiceBuilder::new()
        .layer(SecurityHeadersLayer::web())
        .service_fn(handler);
    bench(&mut group, &rt, "battlement_web", "/", ours.clone());
    bench(
        &mut group,
        &rt,
        "battlement_web_https",
        "https://example.com/",
        ours,
    );

    let nonce = ServiceBuilder::new()
        .layer(
            SecurityHeaders::web()
                .content_security_policy(ContentSecurityPolicy::web().with_nonce())
                .layer(),
        )
        .service_fn(handler);
    bench(&mut group, &rt, "battlement_nonce", "/", nonce);

    // The same two with a handler that sets a header of its own.
    let tower_http_typed = ServiceBuilder::new()
        .layer(helmet_layers())
        .service_fn(typed);
    bench(
        &mut group,
        &rt,
        "tower_http_12_typed",
        "/",
        tower_http_typed,
    );
    let ours_typed = ServiceBuilder::new()
        .layer(SecurityHeadersLayer::web())
        .service_fn(typed);
    bench(&mut group, &rt, "battlement_web_typed", "/", ours_typed);

    group.finish();
    support::report(
        GROUP,
        "bare",
        &[
            ("battlement_web", "tower_http_12"),
            ("battlement_web_https", "tower_http_12"),
            ("battlement_nonce", "tower_http_12"),
            ("battlement_web_typed", "tower_http_12_typed"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = security_headers
}
criterion_main!(benches);
