//! gRPC-native answers (issue 17): a real tonic server (the health service) behind
//! `Stack::wrap`, next to an axum route on one loopback listener (h2c and HTTP/1), called by
//! a real tonic client. Each row of the README's mapping table is covered here.

use std::{
    convert::Infallible,
    net::SocketAddr,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use battlement::stack::{ServerConfig, ServerStack};
use http::{Request, Response};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::Service;

/// The health service, which panics on `x-boom` and sleeps 2 s on `x-slow`.
#[derive(Clone)]
struct Health<S>(S);

impl<S> Service<Request<Body>> for Health<S>
where
    S: Service<Request<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        assert!(req.headers().get("x-boom").is_none(), "boom");
        let slow = req.headers().contains_key("x-slow");
        let fut = self.0.call(req);
        Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            fut.await
        })
    }
}

fn app() -> Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = Health(tonic::service::Routes::new(health).into_axum_router());
    Router::new()
        .route(
            "/http",
            get(|| async { "hello" }).post(|| async { "posted" }),
        )
        .route_service("/grpc.health.v1.Health/{*method}", health)
}

async fn serve(toml: &str) -> SocketAddr {
    let cfg = ServerConfig::from_toml_str(toml).unwrap();
    let stack = ServerStack::from_config(&cfg).unwrap();
    let app = stack.wrap(app());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn client(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

type Hyper = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// The tonic client on a bare HTTP/2 client (no client-side deadline).
fn raw_client(addr: SocketAddr) -> HealthClient<Hyper> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    HealthClient::with_origin(http, format!("http://{addr}").parse().unwrap())
}

fn check(service: &str) -> tonic::Request<HealthCheckRequest> {
    tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    })
}

/// One call, bounded in time.
async fn call<T>(
    c: &mut HealthClient<T>,
    req: tonic::Request<HealthCheckRequest>,
) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tower::BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tower::BoxError> + Send,
{
    tokio::time::timeout(Duration::from_secs(10), c.check(req))
        .await
        .expect("the call answers within 10 s")
}

/// What every refusal answered to a gRPC client must be: our code, our public message, a
/// request id, no problem+json.
fn assert_refused(status: &tonic::Status, code: Code, message: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(message),
        "message {:?} lacks {message:?}",
        status.message()
    );
    let md = status.metadata();
    assert!(md.get("x-request-id").is_some(), "no request id: {md:?}");
    assert_eq!(md.get("content-type").unwrap(), "application/grpc");
    assert!(!status.message().contains("problem"), "{status:?}");
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A raw HTTP/1.1 request on the same listener: status line and the whole response.
async fn http1(addr: SocketAddr, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn api_key_toml(scopes: &str) -> String {
    format!(
        r#"
[api_key]
require_scopes = {scopes}
[[api_key.principals]]
id = "svc"
scopes = ["health:read"]
keys = ["{}"]
"#,
        sha256_hex("key-one-0123456789")
    )
}

#[tokio::test]
async fn api_key_refusal_is_unauthenticated_and_axum_keeps_problem_json() {
    let addr = serve(&api_key_toml("[]")).await;
    let mut c = client(addr).await;
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(&err, Code::Unauthenticated, "A valid API key is required.");
    // With the key, the real service answers.
    let mut req = check("");
    req.metadata_mut().insert(
        "authorization",
        "Bearer key-one-0123456789".parse().unwrap(),
    );
    call(&mut c, req).await.unwrap();
    // The axum route on the same listener still gets RFC 9457.
    let res = http1(
        addr,
        "GET /http HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 401"), "{res}");
    assert!(res.contains("application/problem+json"), "{res}");
    assert!(res.contains("\"status\":401"), "{res}");
    assert!(!res.contains("grpc-status"), "{res}");
}

#[tokio::test]
async fn missing_scope_is_permission_denied() {
    let addr = serve(&api_key_toml(r#"["health:write"]"#)).await;
    let mut c = client(addr).await;
    let mut req = check("");
    req.metadata_mut().insert(
        "authorization",
        "Bearer key-one-0123456789".parse().unwrap(),
    );
    let err = call(&mut c, req).await.unwrap_err();
    assert_refused(
        &err,
        Code::PermissionDenied,
        "The API key is not allowed to use this resource.",
    );
}

#[tokio::test]
async fn rate_limit_is_resource_exhausted_with_pushback() {
    let addr = serve(
        r#"
[rate_limit.per_ip]
requests = 1
per = "1h"
burst = 1
"#,
    )
    .await;
    let mut c = client(addr).await;
    call(&mut c, check("")).await.unwrap();
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(&err, Code::ResourceExhausted, "Too many requests");
    let md = err.metadata();
    let pushback: u64 = md
        .get("retry-pushback-ms")
        .expect("retry-pushback-ms")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let retry_after: u64 = md
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pushback, retry_after * 1000);
    assert!(pushback > 0);
    assert!(
        md.keys().any(|k| match k {
            tonic::metadata::KeyRef::Ascii(k) => k.as_str().starts_with("ratelimit"),
            tonic::metadata::KeyRef::Binary(_) => false,
        }),
        "no RateLimit headers: {md:?}"
    );
}

#[tokio::test]
async fn streamed_body_past_the_limit_is_resource_exhausted() {
    let addr = serve(
        r#"
[body_limit]
max = "256B"
"#,
    )
    .await;
    let mut c = client(addr).await;
    // Small enough: served (and NotFound for an unknown service is the service's answer).
    let small = call(&mut c, check("")).await;
    assert!(small.is_ok(), "{small:?}");
    // tonic streams the message without a content-length: the limit is crossed mid-body.
    let err = call(&mut c, check(&"x".repeat(4096))).await.unwrap_err();
    assert_refused(
        &err,
        Code::ResourceExhausted,
        "larger than the 256 bytes this endpoint accepts",
    );
    // The connection is still usable: a refusal, not a reset.
    call(&mut c, check("")).await.unwrap();
}

#[tokio::test]
async fn panic_is_internal_and_opens_the_breaker_as_unavailable() {
    let addr = serve(
        r#"
[circuit_breaker]
consecutive_failures = 1
cooldown = "1h"
"#,
    )
    .await;
    let mut c = client(addr).await;
    call(&mut c, check("")).await.unwrap();
    let mut req = check("");
    req.metadata_mut().insert("x-boom", "1".parse().unwrap());
    let err = call(&mut c, req).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(!err.message().contains("boom"), "leaked: {err:?}");
    assert!(err.metadata().get("x-request-id").is_some());
    // The panic's gRPC 200 + grpc-status 13 counted as a failure: the breaker is open.
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(&err, Code::Unavailable, "temporarily unavailable");
    assert!(err.metadata().get("retry-pushback-ms").is_some());
}

#[tokio::test]
async fn grpc_timeout_shorter_than_the_configured_one_is_deadline_exceeded() {
    let addr = serve(
        r#"
[timeout]
request = "30s"
"#,
    )
    .await;
    // A tonic client over hyper's client alone: tonic's `Channel` would enforce the deadline
    // itself (and cancel first); this one leaves it to the server.
    let mut c = raw_client(addr);
    let mut req = check("");
    req.metadata_mut().insert("x-slow", "1".parse().unwrap());
    req.set_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let err = call(&mut c, req).await.unwrap_err();
    assert_refused(&err, Code::DeadlineExceeded, "The request took too long");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn configured_timeout_shorter_than_grpc_timeout_wins() {
    let addr = serve(
        r#"
[timeout]
request = "300ms"
"#,
    )
    .await;
    let mut c = client(addr).await;
    let mut req = check("");
    req.metadata_mut().insert("x-slow", "1".parse().unwrap());
    req.set_timeout(Duration::from_secs(20));
    let start = Instant::now();
    let err = call(&mut c, req).await.unwrap_err();
    assert_refused(&err, Code::DeadlineExceeded, "The request took too long");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn plain_text_where_https_is_required_is_failed_precondition() {
    let addr = serve(
        r#"
[https]
redirect = true
allowed_hosts = ["127.0.0.1"]
"#,
    )
    .await;
    let mut c = client(addr).await;
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "HTTPS");
    // Not a gRPC client: the redirect as before.
    let res = http1(
        addr,
        "GET /http HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 301"), "{res}");
}

#[tokio::test]
async fn misdirected_host_is_failed_precondition() {
    let addr = serve(
        r#"
[https]
redirect = true
allowed_hosts = ["api.example.com"]
"#,
    )
    .await;
    let mut c = client(addr).await;
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(
        &err,
        Code::FailedPrecondition,
        "This server does not answer for the requested host.",
    );
}

#[tokio::test]
async fn bad_signature_is_unauthenticated() {
    let dir = std::env::temp_dir().join(format!("battlement-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("key");
    std::fs::write(
        &secret,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .unwrap();
    let addr = serve(&format!(
        r#"
[signing]
[[signing.keys]]
id = "k1"
secret = {{ file = "{}" }}
"#,
        secret.display()
    ))
    .await;
    let mut c = client(addr).await;
    let err = call(&mut c, check("")).await.unwrap_err();
    assert_refused(
        &err,
        Code::Unauthenticated,
        "The request signature is missing or invalid.",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- The standalone layers, and the client side, in process ----

fn grpc_post() -> Request<Body> {
    Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc+proto")
        .body(Body::empty())
        .unwrap()
}

fn grpc_status(res: &Response<Body>) -> &str {
    assert_eq!(res.status(), 200, "{res:?}");
    assert_eq!(res.headers()["content-type"], "application/grpc");
    res.headers()["grpc-status"].to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn standalone_timeout_honours_grpc_timeout_and_answers_deadline_exceeded() {
    use battlement::stack::RequestTimeoutLayer;
    use tower::{Layer, ServiceExt};
    let svc = RequestTimeoutLayer::new(Duration::from_secs(30)).layer(tower::service_fn(
        |_: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        },
    ));
    let mut req = grpc_post();
    req.headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    let start = tokio::time::Instant::now();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(grpc_status(&res), "4");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // Not gRPC: no grpc-timeout applies; the handler answers at 10 s, within the 30 s.
    let res = svc
        .oneshot(Request::post("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn standalone_panic_and_body_limit_answer_grpc() {
    use battlement::{body_limit::BodyLimitLayer, stack::CatchPanicLayer};
    use tower::{Layer, ServiceExt};
    let svc = CatchPanicLayer::new().layer(tower::service_fn(|_: Request<Body>| async {
        if true {
            panic!("secret internals");
        }
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let res = svc.clone().oneshot(grpc_post()).await.unwrap();
    assert_eq!(grpc_status(&res), "13");
    assert!(!format!("{:?}", res.headers()).contains("secret"));
    let res = svc
        .oneshot(Request::post("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    let svc = BodyLimitLayer::new(8).layer(tower::service_fn(|req: Request<_>| async move {
        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let mut req = grpc_post();
    *req.body_mut() = Body::new(Chunks(2));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(grpc_status(&res), "8");
}

/// Two 16-byte chunks, no declared length: the limit is crossed mid-stream.
struct Chunks(u8);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"0123456789abcdef",
        )))))
    }
}

#[tokio::test(start_paused = true)]
async fn client_stack_sends_grpc_timeout_and_retries_unavailable_after_pushback() {
    use std::sync::{Arc, Mutex};

    use battlement::{
        retry::{RetryLayer, RetryPolicy},
        stack::ClientStack,
    };
    use tower::{Layer, ServiceExt};
    // Each attempt: the `grpc-timeout` it carried, and when it came.
    type Seen = Vec<(Option<String>, tokio::time::Instant)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let upstream = tower::service_fn(move |req: Request<battlement::retry::ReplayBody<Body>>| {
        let log = log.clone();
        async move {
            let n = {
                let mut log = log.lock().unwrap();
                log.push((
                    req.headers()
                        .get("grpc-timeout")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    tokio::time::Instant::now(),
                ));
                log.len()
            };
            let res = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", if n == 1 { "14" } else { "0" })
                .header("retry-pushback-ms", "700")
                .body(Body::empty())
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let policy = RetryPolicy::default()
        .retry_request_if(|p| battlement::grpc::is_grpc(&p.headers))
        .with_seed(1);
    let svc = ClientStack::new()
        .retry(RetryLayer::new(policy))
        .timeout(Duration::from_millis(1500))
        .layer(upstream);
    let res = svc.oneshot(grpc_post()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "UNAVAILABLE is retried once");
    assert_eq!(seen[0].0.as_deref(), Some("1500m"));
    assert_eq!(seen[1].0.as_deref(), Some("1500m"));
    assert_eq!(seen[1].1 - seen[0].1, Duration::from_millis(700));
}
