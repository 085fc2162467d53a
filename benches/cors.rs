//! CORS: battlement's `CorsLayer` against tower-http 0.7's, both configured from the same
//! `[cors]` section (one allowed origin, the section's default methods, headers and max-age),
//! on a request without `Origin`, with the allowed origin, with another origin, and on a
//! preflight. `BATTLEMENT_PROFILE=<bench>:<n>` runs one bench `n` times for callgrind.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;

use battlement::{
    cors::{Cors, CorsLayer},
    stack::CorsConfig,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main};
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::cors::{AllowHeaders, AllowOrigin};

const GROUP: &str = "cors";
const ALLOWED: &str = "https://app.example.com";

async fn handler(_req: Request<Empty<Bytes>>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

#[derive(Clone, Copy)]
enum Kind {
    NoOrigin,
    Allowed,
    Other,
    Preflight,
}

fn request(kind: Kind) -> Request<Empty<Bytes>> {
    let b = Request::builder().uri("/orders");
    let b = match kind {
        Kind::NoOrigin => b,
        Kind::Allowed => b.header(header::ORIGIN, HeaderValue::from_static(ALLOWED)),
        Kind::Other => b.header(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        ),
        Kind::Preflight => b
            .method(Method::OPTIONS)
            .header(header::ORIGIN, HeaderValue::from_static(ALLOWED))
            .header(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("POST"),
            ),
    };
    b.body(Empty::new()).unwrap()
}

async fn once<S>(svc: S, kind: Kind)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Empty<Bytes>>, Error = Infallible>,
{
    let res = svc.oneshot(request(kind)).await.unwrap();
    std::hint::black_box(res);
}

fn config() -> CorsConfig {
    CorsConfig {
        allow_origins: vec![ALLOWED.to_owned()],
        ..CorsConfig::default()
    }
}

/// tower-http's layer as the stack's `cors_layer` built it from the same section.
fn tower_http_layer(c: &CorsConfig) -> tower_http::cors::CorsLayer {
    tower_http::cors::CorsLayer::new()
        .allow_credentials(c.allow_credentials)
        .max_age(c.max_age.get())
        .allow_origin(AllowOrigin::list(
            c.allow_origins
                .iter()
                .map(|o| HeaderValue::from_str(o).unwrap()),
        ))
        .allow_methods(
            c.allow_methods
                .iter()
                .map(|m| m.parse::<Method>().unwrap())
                .collect::<Vec<_>>(),
        )
        .allow_headers(AllowHeaders::list(
            c.allow_headers.iter().map(|h| h.parse().unwrap()),
        ))
}

fn cors(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let cfg = config();
    let bare = service_fn(handler);
    let theirs = tower_http_layer(&cfg).layer(service_fn(handler));
    let ours = CorsLayer::new(Cors::from_config(&cfg).unwrap()).layer(service_fn(handler));
    let kinds = [
        ("no_origin", Kind::NoOrigin),
        ("allowed", Kind::Allowed),
        ("other", Kind::Other),
        ("preflight", Kind::Preflight),
    ];

    // Both answer the same way (tests/cors.rs checks it in full).
    rt.block_on(async {
        for (_, kind) in kinds {
            let a = theirs.clone().oneshot(request(kind)).await.unwrap();
            let b = ours.clone().oneshot(request(kind)).await.unwrap();
            assert_eq!(a.status(), b.status());
            assert_eq!(a.headers(), b.headers());
        }
    });

    if support::profiling() {
        for (name, kind) in kinds {
            if let Some(n) = support::profile_iterations(&format!("tower_http_{name}")) {
                rt.block_on(async {
                    for _ in 0..n {
                        once(theirs.clone(), kind).await;
                    }
                });
            }
            if let Some(n) = support::profile_iterations(&format!("battlement_{name}")) {
                rt.block_on(async {
                    for _ in 0..n {
                        once(ours.clone(), kind).await;
                    }
                });
            }
            if let Some(n) = support::profile_iterations(&format!("bare_{name}")) {
                rt.block_on(async {
                    for _ in 0..n {
                        once(bare, kind).await;
                    }
                });
            }
        }
        return;
    }

    let mut group = c.benchmark_group(GROUP);
    for (name, kind) in kinds {
        group.bench_function(format!("bare_{name}"), |b| {
            b.to_async(&rt).iter(|| once(bare, kind))
        });
        group.bench_function(format!("tower_http_{name}"), |b| {
            b.to_async(&rt).iter(|| once(theirs.clone(), kind))
        });
        group.bench_function(format!("battlement_{name}"), |b| {
            b.to_async(&rt).iter(|| once(ours.clone(), kind))
        });
    }
    group.finish();
    for (name, _) in kinds {
        support::report(
            GROUP,
            &format!("bare_{name}"),
            &[(&format!("battlement_{name}"), &format!("tower_http_{name}"))],
        );
    }
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = cors
}
criterion_main!(benches);
