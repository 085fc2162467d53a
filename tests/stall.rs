//! Client faults against the server stack over real loopback sockets: request bodies that stop
//! coming (408, `Connection: close`, not counted by the breaker, under the deadline even while
//! signature verification buffers them), slow handlers (503, counted), and the headers of a
//! panic's 500 in every composition.

#[path = "support/serve.rs"]
mod serve;

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{Request, StatusCode},
    routing::{get, post},
};
use battlement::{
    signing::{
        BufferedBody, Key, KeyRing, SignRequestLayer,
        webhooks::{VerifyWebhookLayer, Webhook, WebhookSecret},
    },
    stack::{ServerConfig, ServerStack, observe::rejection_reason},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The request timeout of every stack here.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How late after the timeout an answer may come (a loaded machine).
const MARGIN: Duration = Duration::from_millis(1500);

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook() -> Webhook {
    Webhook::new(WebhookSecret::from_whsec(WHSEC).unwrap())
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        // A webhook route: its layer buffers the body to check the MAC.
        .route(
            "/hooks",
            post(|body: Bytes| async move { body.len().to_string() })
                .layer(VerifyWebhookLayer::new(webhook())),
        )
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/upload-then-slow",
            post(|body: Bytes| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                body.len().to_string()
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/panic", get(panicking))
}

async fn panicking() -> &'static str {
    panic!("internal detail 7f3a")
}

async fn serve_with(config: &str) -> SocketAddr {
    let cfg = ServerConfig::from_toml_str(config).unwrap();
    serve::serve(ServerStack::from_config(&cfg).unwrap().wrap(app())).await
}

/// An HTTP/1.1 answer read off a socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The server closed the connection after the answer.
    closed: bool,
    /// From the request's first byte to the answer's end.
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `head` and `body` on a new connection (and nothing more), reads one answer (within
/// 5 s: a hang fails the test), then whether the server closes the connection (within 1 s).
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let start = Instant::now();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let (head_len, body_len) = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before an answer: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                break (end + 4, len);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within 5 s to {head:?}"));
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
    let mut rest = [0u8; 256];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(1), sock.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    );
    Answer {
        status,
        headers,
        body,
        closed,
        elapsed,
    }
}

fn post_head(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\ncontent-length: 100\r\n{extra}\r\n"
    )
}

fn get_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n")
}

fn assert_body_timed_out(a: &Answer, what: &str) {
    assert_eq!(a.status, 408, "{what}: {a:?}");
    assert_eq!(
        a.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert!(a.body.contains("#request-timeout"), "{what}: {}", a.body);
    assert!(a.body.contains("\"request_id\""), "{what}: {}", a.body);
    assert_eq!(a.header("connection"), Some("close"), "{what}: {a:?}");
    assert!(a.closed, "{what}: the connection stays open");
    assert!(a.header("x-content-type-options").is_some(), "{what}");
    assert!(
        a.elapsed >= TIMEOUT - Duration::from_millis(50) && a.elapsed < TIMEOUT + MARGIN,
        "{what}: answered after {:?}",
        a.elapsed
    );
}

/// Five uploads that send 10 of their 100 bytes and then nothing, at once.
async fn five_stalled_uploads(addr: SocketAddr, what: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        tasks.spawn(async move { exchange(addr, &post_head("/upload", ""), b"0123456789").await });
    }
    while let Some(answer) = tasks.join_next().await {
        assert_body_timed_out(&answer.unwrap(), what);
    }
}

#[tokio::test]
async fn stalled_uploads_get_408_and_do_not_open_the_breaker() {
    for (what, extra) in [
        ("fused (default parts)", ""),
        ("default parts, some off", "[trace]\nenabled = false"),
        (
            "every part, breaker on",
            "[circuit_breaker]\nconsecutive_failures = 3",
        ),
    ] {
        let addr = serve_with(&format!("[timeout]\nrequest = \"1s\"\n{extra}")).await;
        five_stalled_uploads(addr, what).await;
        // Five more, one after the other: a breaker counting them would be open by now.
        for _ in 0..5 {
            let a = exchange(addr, &post_head("/upload", ""), b"0123456789").await;
            assert_body_timed_out(&a, what);
        }
        let ok = exchange(addr, &get_head("/"), b"").await;
        assert_eq!(ok.status, 200, "{what}: {ok:?}");
        assert_eq!(ok.body, "ok");
        // A whole body is read as before.
        let full = exchange(addr, &post_head("/upload", ""), &[b'x'; 100]).await;
        assert_eq!((full.status, full.body.as_str()), (200, "100"), "{what}");
    }
}

#[tokio::test]
async fn a_slow_handler_still_gets_503_and_trips_the_breaker() {
    let addr = serve_with(
        "[timeout]\nrequest = \"1s\"\n[circuit_breaker]\nconsecutive_failures = 2\ncooldown = \"30s\"",
    )
    .await;
    // Slow after reading its whole body: the handler's fault.
    let a = exchange(addr, &post_head("/upload-then-slow", ""), &[b'x'; 100]).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.body.contains("#service-unavailable"), "{}", a.body);
    assert!(a.elapsed < TIMEOUT + MARGIN, "{:?}", a.elapsed);
    assert_eq!(a.header("connection"), None);
    assert!(!a.closed, "a 503 keeps the connection");
    // Slow without reading any body: the handler's fault too.
    let a = exchange(addr, &get_head("/slow"), b"").await;
    assert_eq!(a.status, 503, "{a:?}");
    // Two failures in a row: open.
    let a = exchange(addr, &get_head("/"), b"").await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    assert!(a.elapsed < Duration::from_millis(500), "{:?}", a.elapsed);
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("battlement-stall-{}-{name}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

/// The `Signature-Input`, `Signature` and `Content-Digest` headers of a signed POST of
/// `body` to `path`, as header lines.
async fn signature_headers(path: &str, body: &[u8]) -> String {
    let signer = SignRequestLayer::new(KeyRing::new(Key::hmac_sha256("k1", &[0xab; 32]).unwrap()))
        .with_components(["@method", "@path"])
        .unwrap();
    let req = Request::post(format!("http://localhost{path}"))
        .body(Body::from(body.to_vec()))
        .unwrap();
    let signed = ServiceBuilder::new()
        .layer(signer)
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, std::convert::Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap();
    let mut lines = String::new();
    for name in ["signature-input", "signature", "content-digest"] {
        let value = signed.headers()[name].to_str().unwrap();
        lines.push_str(&format!("{name}: {value}\r\n"));
    }
    lines
}

#[tokio::test]
async fn a_signed_request_whose_body_stalls_is_answered_within_the_timeout() {
    let secret = temp_file("key", &"ab".repeat(32));
    let addr = serve_with(&format!(
        "[timeout]\nrequest = \"1s\"\n[circuit_breaker]\nconsecutive_failures = 3\n\
         [signing]\nrequired_components = [\"@method\", \"@path\", \"content-digest\"]\n\
         [[signing.keys]]\nid = \"k1\"\nsecret = {{ file = {:?} }}",
        secret.display().to_string()
    ))
    .await;
    let body = [b'x'; 100];
    // The signature is valid: the whole body passes.
    let a = exchange(
        addr,
        &post_head("/upload", &signature_headers("/upload", &body).await),
        &body,
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (200, "100"), "{a:?}");
    // The same request, 10 of its 100 bytes sent (each with its own nonce): 408 in time,
    // not counted by the breaker (3 failures would open it).
    for _ in 0..4 {
        let head = post_head("/upload", &signature_headers("/upload", &body).await);
        let a = exchange(addr, &head, &body[..10]).await;
        assert_body_timed_out(&a, "signed");
    }
    let a = exchange(
        addr,
        &post_head("/upload", &signature_headers("/upload", &body).await),
        &body,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // Unsigned and stalled: refused at once (401), before anything waits for the body.
    let a = exchange(addr, &post_head("/upload", ""), &body[..10]).await;
    assert_eq!(a.status, 401, "{a:?}");
    let _ = std::fs::remove_file(secret);
}

#[tokio::test]
async fn a_panics_500_carries_the_security_and_rate_limit_headers() {
    for (what, extra) in [
        ("fused (default parts)", ""),
        ("default parts, some off", "[trace]\nenabled = false"),
        ("every part", "[circuit_breaker]\nconsecutive_failures = 3"),
    ] {
        let cfg = ServerConfig::from_toml_str(extra).unwrap();
        let app = ServerStack::from_config(&cfg).unwrap().wrap(app());
        let mut req = Request::get("/panic").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        for name in [
            "x-request-id",
            "content-security-policy",
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
            "ratelimit",
            "ratelimit-policy",
        ] {
            assert!(res.headers().contains_key(name), "{what}: no {name}");
        }
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("#internal-error") && !text.contains("7f3a"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_webhook_whose_body_stalls_is_answered_within_the_timeout() {
    let addr = serve_with("[timeout]\nrequest = \"1s\"").await;
    let body = [b'x'; 100];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let headers = |id: &str| {
        let mut lines = String::new();
        for (name, value) in &webhook().headers(id, now, &body).unwrap() {
            lines.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        lines
    };
    // Valid: the whole body passes.
    let a = exchange(addr, &post_head("/hooks", &headers("msg_1")), &body).await;
    assert_eq!((a.status, a.body.as_str()), (200, "100"), "{a:?}");
    // Ten of the hundred bytes: 408 in time.
    let a = exchange(addr, &post_head("/hooks", &headers("msg_2")), &body[..10]).await;
    assert_body_timed_out(&a, "webhook");
}

/// Ten bytes, then nothing ever.
struct Stalls(Option<()>);

impl http_body::Body for Stalls {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(()) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                Bytes::from_static(b"0123456789"),
            )))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Without a socket, on paused time: the 408's typed cause and audit reason, HTTP/2 without
/// `Connection` (a connection-specific header HTTP/2 forbids).
#[tokio::test(start_paused = true)]
async fn the_408_names_its_cause_and_sends_no_connection_header_over_http2() {
    for (what, extra) in [
        ("fused (default parts)", ""),
        ("every part", "[circuit_breaker]\nconsecutive_failures = 3"),
    ] {
        let cfg =
            ServerConfig::from_toml_str(&format!("[timeout]\nrequest = \"1s\"\n{extra}")).unwrap();
        let app = ServerStack::from_config(&cfg).unwrap().wrap(app());
        for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
            let mut req = Request::post("/upload")
                .version(version)
                .header("content-length", "100")
                .body(Body::new(Stalls(Some(()))))
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
            let start = tokio::time::Instant::now();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(start.elapsed(), TIMEOUT, "{what}");
            assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT, "{what}");
            assert_eq!(rejection_reason(&res), Some("body_timeout"), "{what}");
            assert!(
                res.extensions()
                    .get::<battlement::stack::BodyTimedOut>()
                    .is_some_and(|c| c.after == TIMEOUT),
                "{what}"
            );
            assert!(
                res.extensions()
                    .get::<battlement::problem::Refused>()
                    .is_some(),
                "{what}"
            );
            let close = res.headers().get("connection").map(|v| v.to_str().unwrap());
            match version {
                http::Version::HTTP_2 => assert_eq!(close, None, "{what}"),
                _ => assert_eq!(close, Some("close"), "{what}"),
            }
        }
    }
}

/// A 5xx a battlement layer answers itself (here a rate limit whose key, the peer address, is
/// missing: 500) is not the service failing: a breaker outside it does not count it. The
/// service's own 500s still do.
#[tokio::test]
async fn a_breaker_does_not_count_the_5xx_of_a_layer_inside_it() {
    use battlement::{
        circuit_breaker::{BreakerConfig, CircuitBreakerLayer},
        net::TrustedProxies,
        rate_limit::{ClientIp, Limit, Quota, RateLimitLayer},
    };
    let breaker = CircuitBreakerLayer::from_config(BreakerConfig::consecutive_failures(2))
        .unwrap()
        .server();
    let limit = RateLimitLayer::new(Limit::new(
        ClientIp::new(TrustedProxies::none()),
        Quota::per_second(std::num::NonZeroU32::new(1000).unwrap()),
    ));
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(limit)
        .service(service_fn(|req: Request<Body>| async move {
            let status = if req.uri().path() == "/fail" {
                500
            } else {
                200
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .body(Body::empty())
                    .unwrap(),
            )
        }));
    let req = |path: &str, peer: bool| {
        let mut req = Request::get(path).body(Body::empty()).unwrap();
        if peer {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
        }
        req
    };
    for _ in 0..5 {
        let res = svc.clone().oneshot(req("/", false)).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let res = svc.clone().oneshot(req("/", true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the breaker opened");
    for _ in 0..2 {
        let res = svc.clone().oneshot(req("/fail", true)).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let res = svc.clone().oneshot(req("/", true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "not open");
    assert!(res.headers().contains_key("retry-after"));
}

/// A refusal decided before the body came (401: no API key, no signature) reads a small body
/// still coming only to end the stream cleanly. A client that stalls that body gets the 401
/// when the request timeout passes, not a 408 (the timeout here, 300 ms, is shorter than the
/// read's own bound of 1 s, so the two cannot tie): in the engine (API keys) and in the
/// layers (signature verification, with the breaker on).
#[tokio::test]
async fn a_decided_refusal_whose_body_stalls_is_answered_at_the_deadline_not_timed_out() {
    let secret = temp_file("key-decided", &"cd".repeat(32));
    let hash = battlement::auth::api_key::hash_key("demo-key-1").to_hex();
    for (what, config) in [
        (
            "engine (API keys)",
            format!(
                "[timeout]\nrequest = \"300ms\"\n[api_key]\nheader = \"x-api-key\"\n\
                 [[api_key.principals]]\nid = \"alice\"\nkeys = [\"{hash}\"]"
            ),
        ),
        (
            "layers (signatures, breaker)",
            format!(
                "[timeout]\nrequest = \"300ms\"\n[circuit_breaker]\nconsecutive_failures = 3\n\
                 [signing]\nrequired_components = [\"@method\", \"@path\"]\n\
                 [[signing.keys]]\nid = \"k1\"\nsecret = {{ file = {:?} }}",
                secret.display().to_string()
            ),
        ),
    ] {
        let addr = serve_with(&config).await;
        for _ in 0..4 {
            let a = exchange(addr, &post_head("/upload", ""), &[b'x'; 10]).await;
            assert_eq!(a.status, 401, "{what}: {a:?}");
            assert!(
                a.elapsed >= Duration::from_millis(250) && a.elapsed < Duration::from_millis(950),
                "{what}: answered after {:?}",
                a.elapsed
            );
        }
        // Not counted by the breaker (open, it would answer 503): a request with the key is
        // served, an unsigned one is refused for its missing signature.
        let (head, status) = if what.starts_with("engine") {
            (
                "GET / HTTP/1.1\r\nhost: localhost\r\nx-api-key: demo-key-1\r\n\r\n".to_owned(),
                200,
            )
        } else {
            (get_head("/"), 401)
        };
        let a = exchange(addr, &head, b"").await;
        assert_eq!(a.status, status, "{what}: {a:?}");
    }
    let _ = std::fs::remove_file(secret);
}
