//! API-key check per request: ours (1 and 10,000 keys) next to tower-http's bearer check.
//!
//! tower-http's `ValidateRequestHeaderLayer::bearer` compares one token with `==` (not constant
//! time) and is deprecated; it is still the closest tower equivalent. Ours hashes the key
//! (SHA-256), looks it up, compares in constant time and inserts the principal.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;

use battlement::auth::api_key::{ApiKeyLayer, ApiKeys, Principal, PrincipalId, hash_key};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};

const KEY: &str = "bk_live_4q2vFZ8nJ0yXoWcRk1uB7sLdHt3eGmPa9YiQzNhC5Vx";
const BEARER: &str = "Bearer bk_live_4q2vFZ8nJ0yXoWcRk1uB7sLdHt3eGmPa9YiQzNhC5Vx";

async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn keys(n: usize) -> ApiKeys {
    let mut builder = ApiKeys::builder();
    for i in 0..n.saturating_sub(1) {
        let p = Principal::new(PrincipalId::new(&format!("p{i}")).unwrap());
        builder = builder.key(hash_key(&format!("bk_live_other_key_{i}")), &p);
    }
    let p = Principal::with_scopes(PrincipalId::new("billing").unwrap(), ["read"], None).unwrap();
    builder.key(hash_key(KEY), &p).build().unwrap()
}

fn request() -> Request<Full<Bytes>> {
    Request::get("/orders")
        .header(header::AUTHORIZATION, BEARER)
        .body(Full::default())
        .unwrap()
}

fn bench_one<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    svc: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
{
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(request()).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                drop(res);
            }
        });
    });
}

fn api_key(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("api_key");

    bench_one(&mut group, &rt, "bare", service_fn(ok));

    #[allow(deprecated)]
    let theirs =
        tower_http::validate_request::ValidateRequestHeaderLayer::bearer(KEY).layer(service_fn(ok));
    bench_one(&mut group, &rt, "tower_http", theirs);

    let one = ApiKeyLayer::new(keys(1)).layer(service_fn(ok));
    bench_one(&mut group, &rt, "battlement_1_key", one);

    let many = ApiKeyLayer::new(keys(10_000)).layer(service_fn(ok));
    bench_one(&mut group, &rt, "battlement_10000_keys", many);

    group.finish();
    support::report(
        "api_key",
        "bare",
        &[
            ("battlement_1_key", "tower_http"),
            ("battlement_10000_keys", "tower_http"),
        ],
    );
}

/// The same services without the async runtime: `call` and one poll with a no-op waker (every
/// future here is ready at once), so the layers' own cost stands out from the executor's.
fn api_key_sync(c: &mut criterion::Criterion) {
    fn bench_one<S>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        id: &str,
        mut svc: S,
    ) where
        S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>,
    {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        group.bench_function(id, |b| {
            b.iter(|| {
                assert!(svc.poll_ready(&mut cx).is_ready());
                let mut fut = std::pin::pin!(svc.call(request()));
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(Ok(res)) => assert_eq!(res.status(), StatusCode::OK),
                    _ => unreachable!("every service here answers at once"),
                }
            });
        });
    }
    use std::future::Future as _;

    let mut group = c.benchmark_group("api_key_sync");
    bench_one(&mut group, "bare", service_fn(ok));
    #[allow(deprecated)]
    let theirs =
        tower_http::validate_request::ValidateRequestHeaderLayer::bearer(KEY).layer(service_fn(ok));
    bench_one(&mut group, "tower_http", theirs);
    bench_one(
        &mut group,
        "battlement_1_key",
        ApiKeyLayer::new(keys(1)).layer(service_fn(ok)),
    );
    bench_one(
        &mut group,
        "battlement_10000_keys",
        ApiKeyLayer::new(keys(10_000)).layer(service_fn(ok)),
    );
    group.finish();
    support::report(
        "api_key_sync",
        "bare",
        &[
            ("battlement_1_key", "tower_http"),
            ("battlement_10000_keys", "tower_http"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = api_key, api_key_sync
}
criterion_main!(benches);
