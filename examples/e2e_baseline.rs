//! The servers of the end-to-end load test (`scripts/e2e-load`): `GET /noop` on an axum
//! `Router`, in one of five modes.
//!
//! ```sh
//! cargo run --release --example e2e_baseline -- stack 127.0.0.1:3999
//! ```
//!
//! - `bare`: the route alone, no middleware.
//! - `floor`: no middleware; the handler sets the response headers the default stack sends
//!   (security headers, request id, rate-limit headers: same names, same value lengths),
//!   pre-parsed, with one `reserve` and one insert each. This is the wire cost of those
//!   headers, the floor for any middleware that sends them.
//! - `job`: no middleware; the handler does by hand the least work of the default stack's
//!   job and sends the same headers as `floor`: a fresh UUID v7 request id in the request's
//!   header and extensions and in the response's, a per-address rate-limit decision
//!   (governor's keyed limiter with its state) written as the `ratelimit` header, the
//!   deadline's clock read, the `Content-Length` lookup of the body limit, the other headers
//!   as `floor` sets them. No middleware can do the job for less: `job / floor` bounds what
//!   any implementation of the stack can reach end to end.
//! - `anchor`: the same protection from tower-http and tower_governor: `SetRequestId` (UUID) +
//!   `PropagateRequestId`, 12 `SetResponseHeader` layers with helmet's values,
//!   `RequestBodyLimit` (1 MiB) and a `GovernorLayer` keyed by peer IP.
//! - `stack`: `ServerStack::from_config` on the default configuration, with the per-address
//!   quota raised so that the load generator is never limited (the limiter still runs).
//!
//! Same runtime as `examples/server.rs` (`#[tokio::main]`; pin it with `taskset` to get one
//! worker), served with `into_make_service_with_connect_info::<SocketAddr>()` in every mode.
//! No tracing subscriber is installed: nothing is logged per request.

use std::{
    io::Write,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderName, HeaderValue, Request, Response, StatusCode},
    routing::get,
};
use battlement::{
    request_id::DefaultMakeRequestId,
    stack::{ServerConfig, ServerStack},
};
use governor::{
    RateLimiter, clock::DefaultClock, middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

/// The default configuration with a per-address quota that a load generator cannot exhaust.
const STACK: &str = r#"
[rate_limit.per_ip]
requests = 1000000000
per = "1s"
burst = 1000000000
"#;

#[path = "../benches/support/helmet.rs"]
mod helmet;
use helmet::helmet_layers;

async fn noop() -> StatusCode {
    StatusCode::OK
}

type Headers = Arc<[(HeaderName, HeaderValue)]>;

async fn floor(State(headers): State<Headers>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    let map = res.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers.iter() {
        map.insert(name.clone(), value.clone());
    }
    res
}

/// What the `job` handler keeps: the other headers, the limiter.
struct Job {
    headers: Vec<(HeaderName, HeaderValue)>,
    limiter: RateLimiter<
        IpAddr,
        DefaultKeyedStateStore<IpAddr>,
        DefaultClock,
        StateInformationMiddleware,
    >,
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The work of the job, all in `call` (the future is a `Ready`: no large future boxed per
/// request, unlike an `async fn` handler holding the request).
fn job(job: &Job, mut req: Request<Body>) -> Response<Body> {
    // The timeout's deadline, and the body limit's look at the declared length.
    let deadline = std::hint::black_box(Instant::now() + Duration::from_secs(30));
    std::hint::black_box(req.headers().get(axum::http::header::CONTENT_LENGTH));
    // The request id, on the request.
    let id = DefaultMakeRequestId::generate();
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), id.header_value().clone());
    req.extensions_mut().insert(id.clone());
    // The rate-limit decision and its header.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let remaining = match job.limiter.check_key(&peer) {
        Ok(state) => state.remaining_burst_capacity(),
        Err(_) => 0,
    };
    let mut buf = [0u8; 64];
    let mut w = &mut buf[..];
    let _ = write!(w, "\"per-minute\";r={remaining};t=1");
    let left = w.len();
    let state =
        HeaderValue::from_bytes(&buf[..buf.len() - left]).unwrap_or(HeaderValue::from_static(""));
    // The response: the other headers, then the id and the rate-limit state.
    let mut res = Response::new(Body::empty());
    let map = res.headers_mut();
    map.reserve(job.headers.len() + 2);
    for (name, value) in &job.headers {
        map.insert(name.clone(), value.clone());
    }
    map.insert(X_REQUEST_ID.clone(), id.header_value().clone());
    map.insert(RATELIMIT.clone(), state);
    res.extensions_mut().insert(id);
    std::hint::black_box((deadline, req));
    res
}

fn job_state(headers: &Headers) -> Result<Arc<Job>, String> {
    let quota = governor::Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX);
    Ok(Arc::new(Job {
        headers: headers
            .iter()
            .filter(|(n, _)| *n != X_REQUEST_ID && *n != RATELIMIT)
            .cloned()
            .collect(),
        limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
    }))
}

fn stack() -> Result<ServerStack, String> {
    let config = ServerConfig::from_toml_str(STACK).map_err(|e| e.to_string())?;
    ServerStack::from_config(&config).map_err(|e| e.to_string())
}

/// The headers the stack sends on `GET /noop`, from one request in process.
async fn stack_headers() -> Result<Headers, String> {
    let app = stack()?.wrap(Router::new().route("/noop", get(noop)));
    let mut req = Request::get("/noop")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let Ok(res) = app.oneshot(req).await;
    if res.status() != StatusCode::OK {
        return Err(format!("the stack answered {}", res.status()));
    }
    Ok(res
        .headers()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect())
}

fn anchor() -> Result<Router, String> {
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .ok_or("invalid governor config")?;
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(helmet_layers())
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(GovernorLayer::new(governor));
    Ok(Router::new().route("/noop", get(noop)).layer(layers))
}

async fn app(mode: &str) -> Result<Router, String> {
    Ok(match mode {
        "bare" => Router::new().route("/noop", get(noop)),
        "floor" => Router::new()
            .route("/noop", get(floor))
            .with_state(stack_headers().await?),
        "job" => {
            let state = job_state(&stack_headers().await?)?;
            let svc = tower::service_fn(move |req: Request<Body>| {
                std::future::ready(Ok::<_, std::convert::Infallible>(job(&state, req)))
            });
            Router::new().route("/noop", axum::routing::get_service(svc))
        }
        "anchor" => anchor()?,
        "stack" => stack()?.wrap(Router::new().route("/noop", get(noop))),
        other => {
            return Err(format!(
                "unknown mode `{other}`: bare, floor, job, anchor or stack"
            ));
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "stack".to_owned());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3999".to_owned());
    let app = match app(&mode).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("e2e_baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("e2e_baseline: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("e2e_baseline: {mode} on http://{addr}/noop");
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e_baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
