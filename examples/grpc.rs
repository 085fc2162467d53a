//! gRPC and axum routes on one listener behind one battlement stack: the tonic health
//! service and an axum route, both behind an API key. A gRPC client refused by the stack gets
//! a gRPC status (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`, ...), an HTTP client gets RFC 9457
//! problem+json.
//!
//! ```sh
//! cargo run --example grpc
//! ```
//!
//! It serves on a loopback port, calls itself with a tonic client (without a key, then with
//! one) and over HTTP/1 (without a key), prints what each got, and exits non-zero when an
//! answer is not the expected one. `BATTLEMENT_GRPC_SERVE=1` keeps serving on 127.0.0.1:50051
//! (try `grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check`).

use std::{net::SocketAddr, process::ExitCode};

use axum::{Router, routing::get};
use battlement::stack::{ServerConfig, ServerStack};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const KEY: &str = "example-key-0123456789";

#[tokio::main]
async fn main() -> ExitCode {
    let hash: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cfg = ServerConfig::from_toml_str(&format!(
        "[api_key]\n[[api_key.principals]]\nid = \"example\"\nkeys = [\"{hash}\"]\n"
    ))
    .expect("config");
    let stack = ServerStack::from_config(&cfg).expect("stack");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let app = stack.wrap(
        Router::new()
            .route("/hello", get(|| async { "hello" }))
            .merge(tonic::service::Routes::new(health).into_axum_router()),
    );
    let serve_forever = std::env::var_os("BATTLEMENT_GRPC_SERVE").is_some();
    let bind = if serve_forever {
        "127.0.0.1:50051"
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    println!("serving gRPC and HTTP on {addr}");
    if serve_forever {
        let _ = server.await;
        return ExitCode::SUCCESS;
    }

    let mut ok = true;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let req = |key: Option<&str>| {
        let mut req = tonic::Request::new(HealthCheckRequest::default());
        if let Some(key) = key {
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("metadata"),
            );
        }
        req
    };
    match client.check(req(None)).await {
        Err(status) => {
            println!(
                "gRPC without a key: {:?} {:?}",
                status.code(),
                status.message()
            );
            ok &= status.code() == tonic::Code::Unauthenticated;
        }
        Ok(res) => {
            println!("gRPC without a key was served: {res:?}");
            ok = false;
        }
    }
    match client.check(req(Some(KEY))).await {
        Ok(res) => println!("gRPC with the key: {:?}", res.get_ref().status()),
        Err(status) => {
            println!("gRPC with the key failed: {status:?}");
            ok = false;
        }
    }
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    let head = out.lines().next().unwrap_or_default();
    println!(
        "HTTP without a key: {head}, {}",
        out.lines().last().unwrap_or_default()
    );
    ok &= head.starts_with("HTTP/1.1 401") && out.contains("application/problem+json");
    if ok {
        println!("all answers as expected");
        ExitCode::SUCCESS
    } else {
        println!("unexpected answers");
        ExitCode::FAILURE
    }
}
