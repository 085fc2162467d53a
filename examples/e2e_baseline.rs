//! The servers of the end-to-end load test (`scripts/e2e-load`): `GET /noop` on an axum
//! `Router`, in one of four modes.
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
//! - `anchor`: the same protection from tower-http and tower_governor: `SetRequestId` (UUID) +
//!   `PropagateRequestId`, 12 `SetResponseHeader` layers with helmet's values,
//!   `RequestBodyLimit` (1 MiB) and a `GovernorLayer` keyed by peer IP.
//! - `stack`: `ServerStack::from_config` on the default configuration, with the per-address
//!   quota raised so that the load generator is never limited (the limiter still runs).
//!
//! Same runtime as `examples/server.rs` (`#[tokio::main]`; pin it with `taskset` to get one
//! worker), served with `into_make_service_with_connect_info::<SocketAddr>()` in every mode.
//! No tracing subscriber is installed: nothing is logged per request.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderName, HeaderValue, Request, Response, StatusCode},
    routing::get,
};
use battlement::stack::{ServerConfig, ServerStack};
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
        "anchor" => anchor()?,
        "stack" => stack()?.wrap(Router::new().route("/noop", get(noop))),
        other => {
            return Err(format!(
                "unknown mode `{other}`: bare, floor, anchor or stack"
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
