//! The audit log of failed signature checks (its own test binary: it installs a global
//! `tracing` subscriber, which parallel tests in one process would race on).

use axum::{Router, body::Body, routing::post};
use battlement::{
    net::PeerAddr,
    signing::{BufferedBody, Key, KeyRing, SignRequestLayer, VerifySignatureLayer},
};
use http::{Request, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf as LogBuf;

#[tokio::test]
async fn failed_attempts_are_logged_without_secrets_or_signatures() {
    let buf = LogBuf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let now = 1_700_000_000;
    let client_ring = KeyRing::new(Key::hmac_sha256("client-1", &[7; 32]).unwrap());
    let server_ring = KeyRing::new(Key::hmac_sha256("client-1", &[8; 32]).unwrap());
    let app = Router::new()
        .route("/orders", post(|| async { "ok" }))
        .layer(VerifySignatureLayer::new(server_ring).with_clock(move || now));

    let signed = ServiceBuilder::new()
        .layer(SignRequestLayer::new(client_ring).with_clock(move || now))
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, std::convert::Infallible>(r)
        }))
        .oneshot(
            Request::post("http://api.example.com/orders")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    let signature = signed.headers()["signature"].to_str().unwrap().to_owned();
    let b64 = signature.split(':').nth(1).unwrap().to_owned();
    let (mut parts, body) = signed.into_parts();
    parts
        .extensions
        .insert(PeerAddr("203.0.113.9:4711".parse().unwrap()));
    let req = Request::from_parts(parts, Body::from(body.into_bytes()));
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("key_id=client-1"), "{log}");
    assert!(log.contains("reason=invalid_signature"), "{log}");
    assert!(log.contains("client=203.0.113.9:4711"), "{log}");
    assert!(!log.contains(&b64), "{log}");
    assert!(!log.contains("0808080808"), "{log}");
}
