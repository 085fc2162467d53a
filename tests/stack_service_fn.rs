//! `ServerStack` used directly as a tower layer around a `tower::service_fn` handler, with no
//! axum in between, driven with `oneshot(...).await`: with the defaults, and with every part
//! on. The handler names the one body type the stack hands it (`StackBody<B>`); a handler
//! generic over its body works too.
//!
//! This file is also a compile-time guard: the stack's service is one type whatever is on,
//! so type-checking it costs the same as any tower service. A return of a per-layer type
//! (each optional layer an `Either`) makes this file take minutes and gigabytes to check.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf};

use battlement::{
    auth::api_key::hash_key,
    net::{PeerAddr, Scheme},
    signing::{BufferedBody, Key, KeyRing, SignRequestLayer},
    stack::{ServerConfig, ServerStack, StackBody},
};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

type In = Full<Bytes>;

/// Answers the length of the body it read, and whether the stack had read it whole.
async fn handler(req: Request<StackBody<In>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let buffered = req.body().is_buffered();
    let body = req.into_body().collect().await.map(|c| c.to_bytes());
    let text = match body {
        Ok(b) => format!("{} bytes, buffered {buffered}", b.len()),
        Err(e) => format!("body error: {e}"),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// Any body: only its size hint is read.
async fn generic<B: Body>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let hint = req.body().size_hint().exact();
    Ok(Response::new(Full::new(Bytes::from(format!("{hint:?}")))))
}

fn from_peer(mut req: Request<In>) -> Request<In> {
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([203, 0, 113, 9], 40000))));
    req
}

async fn text(res: Response<Full<Bytes>>) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_default_stack_around_a_service_fn() {
    let svc = ServerStack::new().layer(service_fn(handler));
    let req = from_peer(
        Request::post("/")
            .body(Full::new(Bytes::from("hello")))
            .unwrap(),
    );
    let res = svc.clone().oneshot(req).await.unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        text(res).await,
        (StatusCode::OK, "5 bytes, buffered false".into())
    );
    // Over the 1 MiB default: 413 problem, the handler never reads a byte past the limit.
    let big = Bytes::from(vec![b'x'; 1024 * 1024 + 1]);
    let req = from_peer(Request::post("/").body(Full::new(big)).unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    // A handler generic over its body.
    let svc = ServerStack::new().layer(service_fn(generic));
    let req = from_peer(
        Request::post("/")
            .body(Full::new(Bytes::from("abc")))
            .unwrap(),
    );
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(text(res).await, (StatusCode::OK, "Some(3)".into()));
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "battlement-service-fn-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&path, content).unwrap();
    path
}

/// Signs a POST of `body` to `path` as a client of the `k1` key would.
async fn signed(path: &str, body: &'static [u8]) -> Request<In> {
    let signer = SignRequestLayer::new(KeyRing::new(Key::hmac_sha256("k1", &[0xab; 32]).unwrap()))
        .with_components(["@method", "@path"])
        .unwrap();
    let req = Request::post(format!("https://api.example.com{path}"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let signed = ServiceBuilder::new()
        .layer(signer)
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap();
    let (parts, _) = signed.into_parts();
    from_peer(Request::from_parts(
        parts,
        Full::new(Bytes::from_static(body)),
    ))
}

#[tokio::test]
async fn every_part_on_around_a_service_fn() {
    let secret = temp_file("key", &"ab".repeat(32));
    let hash = hash_key("demo-key-1").to_hex();
    let cfg = ServerConfig::from_toml_str(&format!(
        r#"
        [https]
        redirect = true
        allowed_hosts = ["api.example.com"]
        [cors]
        allow_origins = ["https://app.example.com"]
        [circuit_breaker]
        consecutive_failures = 5
        [api_key]
        header = "x-api-key"
        [[api_key.principals]]
        id = "alice"
        keys = ["{hash}"]
        [rate_limit.per_principal]
        requests = 100
        [signing]
        required_components = ["@method", "@path"]
        [[signing.keys]]
        id = "k1"
        secret = {{ file = {:?} }}
        "#,
        secret.display().to_string()
    ))
    .unwrap();
    let stack = ServerStack::from_config(&cfg).unwrap();
    assert_eq!(
        stack.enabled(),
        [
            "request_id",
            "observe",
            "catch_panic",
            "security_headers",
            "https",
            "cors",
            "body_limit",
            "rate_limit_ip",
            "circuit_breaker",
            "timeout",
            "api_key",
            "signing",
            "rate_limit_principal",
        ]
    );
    let svc = stack.layer(service_fn(handler));
    let https = |mut req: Request<In>| {
        req.extensions_mut().insert(Scheme::Https);
        req
    };

    // Plain HTTP: redirected.
    let req = from_peer(
        Request::get("http://api.example.com/x")
            .header(header::HOST, "api.example.com")
            .body(In::default())
            .unwrap(),
    );
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(res.headers()[header::LOCATION], "https://api.example.com/x");

    // A CORS preflight from the allowed origin: answered by the stack.
    let req = from_peer(https(
        Request::options("https://api.example.com/x")
            .header(header::ORIGIN, "https://app.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(In::default())
            .unwrap(),
    ));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );

    // The key, signed: the handler reads the body the verification read whole.
    let mut req = https(signed("/x", b"payload").await);
    req.headers_mut()
        .insert("x-api-key", "demo-key-1".parse().unwrap());
    req.headers_mut()
        .insert(header::ORIGIN, "https://app.example.com".parse().unwrap());
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(res.headers().contains_key("ratelimit"));
    assert_eq!(
        text(res).await,
        (StatusCode::OK, "7 bytes, buffered true".into())
    );

    // The key, unsigned: 401 from the verification.
    let mut req = https(from_peer(
        Request::post("https://api.example.com/x")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    ));
    req.headers_mut()
        .insert("x-api-key", "demo-key-1".parse().unwrap());
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Signed, no key: 401 from the API key.
    let req = https(signed("/x", b"payload").await);
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    let _ = std::fs::remove_file(secret);
}

/// A gRPC client's `grpc-timeout` shorter than the stack's 30 s is the deadline in force, and
/// the typed cause reports it (not the configured one).
#[tokio::test(start_paused = true)]
async fn a_grpc_timeout_is_the_deadline_the_cause_reports() {
    use battlement::stack::TimedOut;
    let slow = service_fn(|_req: Request<StackBody<In>>| async {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let svc = ServerStack::new().layer(slow);
    let mut req = from_peer(Request::post("/pkg.Svc/Call").body(In::default()).unwrap());
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    req.headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert_eq!(
        res.extensions().get::<TimedOut>().map(|t| t.after),
        Some(std::time::Duration::from_millis(100))
    );
}
