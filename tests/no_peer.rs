//! Issue 18, item 9: a server started without the peer address (`axum::serve(listener, app)`
//! without `into_make_service_with_connect_info`) answers 500 to every request its per-address
//! rate limit sees. The 500 must say why, in a well-formed problem+json body that names the fix
//! (and nothing internal), and the ERROR log must stay. This file installs the global
//! subscriber.

#[path = "support/log_buf.rs"]
mod log_buf;

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use battlement::{
    Stack,
    rate_limit::{ExtensionKey, KeyError, KeyErrorKind, Limit, PeerIp, Quota, RateLimitLayer},
    stack::ServerConfig,
};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use log_buf::Buf;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, service_fn};

/// The logs of every test in this file (one global subscriber).
fn logs() -> &'static Buf {
    static BUF: OnceLock<Buf> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Buf::default();
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8(logs().0.lock().unwrap().clone()).unwrap()
}

/// What a 500 for a missing peer address must look like; returns the problem document.
fn assert_names_the_fix(status: StatusCode, content_type: &str, body: &[u8]) -> Value {
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type, "application/problem+json");
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(v["status"], 500, "{v}");
    assert_eq!(v["title"], "Internal Server Error", "{v}");
    let ty = v["type"].as_str().unwrap();
    assert!(ty.ends_with("#internal-error"), "{ty}");
    let detail = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {v}"));
    assert!(
        detail.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{detail}"
    );
    assert!(detail.contains("battlement::net::PeerAddr"), "{detail}");
    // No internals: not the log's wording, not the limiter's.
    for internal in [
        "extensions:",
        "rate limit misconfigured",
        "KeyError",
        "quota",
    ] {
        assert!(!detail.contains(internal), "{internal:?} in {detail}");
    }
    v
}

/// The server, on a real socket: the stack from the default configuration (its per-IP
/// limit) served by `axum::serve(listener, app)` without connect info.
#[tokio::test]
async fn stack_served_without_connect_info_answers_a_500_that_names_the_fix() {
    let _ = logs();
    let app = Stack::from_config(&ServerConfig::default())
        .unwrap()
        .wrap(Router::new().route("/", get(|| async { "hello" })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let raw = tokio::time::timeout(Duration::from_secs(10), async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        // Bounded: the server closes (connection: close); the timeout bounds the wait.
        conn.take(64 * 1024).read_to_end(&mut raw).await.unwrap();
        raw
    })
    .await
    .expect("the server answered within 10 s");
    server.abort();

    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status_line = head.lines().next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 500 "), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let v = assert_names_the_fix(
        StatusCode::INTERNAL_SERVER_ERROR,
        &content_type,
        body.as_bytes(),
    );
    // The stack's request id is in the problem, like every rejection's.
    assert!(v["request_id"].is_string(), "{v}");

    // The ERROR log stays, and still names the fix for the operator.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = log_text();
        if logs.lines().any(|l| {
            l.contains("ERROR")
                && l.contains("rate limit key unavailable")
                && l.contains("into_make_service_with_connect_info")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no ERROR log:\n{logs}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The layer alone (`PeerIp`), without the stack: the same body, the typed cause in the response
/// extensions.
#[tokio::test]
async fn rate_limit_layer_without_peer_names_the_fix_and_carries_the_cause() {
    let _ = logs();
    let svc = RateLimitLayer::new(Limit::new(
        PeerIp::new(),
        Quota::per_second(std::num::NonZeroU32::new(10).unwrap()),
    ))
    .layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    let res = svc
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let cause = res.extensions().get::<KeyError>().cloned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_names_the_fix(status, &content_type, &body);
    assert_eq!(cause.map(|e| e.kind()), Some(KeyErrorKind::MissingPeerAddr));
}

/// Another misconfiguration (a required extension missing) keeps the generic 500: its cause may
/// name internals (a type of the application), so it stays in the log.
#[tokio::test]
async fn other_key_errors_keep_the_generic_detail() {
    #[derive(Clone, Hash, PartialEq, Eq)]
    struct TenantSecretThing;
    let _ = logs();
    let svc = RateLimitLayer::new(Limit::new(
        ExtensionKey::<TenantSecretThing>::new().required(),
        Quota::per_second(std::num::NonZeroU32::new(10).unwrap()),
    ))
    .layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    let res = svc
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.extensions().get::<KeyError>().map(KeyError::kind),
        Some(KeyErrorKind::MissingExtension)
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let detail = v["detail"].as_str().unwrap_or("");
    assert!(!detail.contains("TenantSecretThing"), "{detail}");
    assert!(!detail.contains("into_make_service"), "{detail}");
}
