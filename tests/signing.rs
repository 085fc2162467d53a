//! Integration tests of `battlement::signing` on real axum routers (and real sockets).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Extension, Router, body::Body, routing::any};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use battlement::{
    net::Scheme,
    signing::{
        BufferedBody, Clock, Key, KeyRing, NonceRequirement, SignRequestLayer, SignatureError,
        SignatureErrorKind, TokioClock, VerifiedSignature, VerifyPolicy, VerifySignatureLayer,
        parse_signature_input, signature_base,
    },
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const B1_KEY: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const T0: u64 = 1_618_884_473;
const SHA512_HELLO: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

fn rfc_key() -> Key {
    Key::from_base64("test-shared-secret", B1_KEY).unwrap()
}

/// RFC 9421 B.2 `test-request`, with or without its body.
fn test_request(with_body: bool) -> Request<Body> {
    Request::post("/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-type", "application/json")
        .header("content-digest", SHA512_HELLO)
        .body(if with_body {
            Body::from(r#"{"hello": "world"}"#)
        } else {
            Body::empty()
        })
        .unwrap()
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct Manual(Arc<AtomicU64>);

impl Manual {
    fn new(t: u64) -> Self {
        Self(Arc::new(AtomicU64::new(t)))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    fn clock(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let t = self.0.clone();
        move || t.load(Ordering::SeqCst)
    }
}

fn app(layer: VerifySignatureLayer) -> Router {
    Router::new()
        .route(
            "/{*path}",
            any(
                |Extension(v): Extension<VerifiedSignature>, body: Bytes| async move {
                    format!("{}:{}", v.key_id(), String::from_utf8_lossy(&body))
                },
            ),
        )
        .layer(layer)
}

async fn send(
    app: &Router,
    req: Request<impl Into<Body>>,
) -> (StatusCode, Option<SignatureErrorKind>, String) {
    let (parts, body) = req.into_parts();
    let res = app
        .clone()
        .oneshot(Request::from_parts(parts, body.into()))
        .await
        .unwrap();
    let status = res.status();
    let kind = res.extensions().get::<SignatureError>().map(|e| e.kind());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

/// Signs `req` with `layer` and returns the signed request (the inner service echoes it).
async fn sign(layer: SignRequestLayer, req: Request<Body>) -> Request<BufferedBody> {
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap()
}

fn into_body(req: Request<BufferedBody>) -> Request<Body> {
    let (p, b) = req.into_parts();
    Request::from_parts(p, Body::from(b.into_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Golden vectors

#[tokio::test]
async fn rfc9421_b25_golden_sign_and_verify() {
    let input = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
    let parsed = parse_signature_input(input.as_bytes()).unwrap();
    let base = signature_base(&test_request(true), &parsed[0], Scheme::Https).unwrap();
    assert_eq!(
        STANDARD.encode(rfc_key().sign(&base)),
        "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="
    );

    // Verify through the layer. B.2.5 covers no digest, so the request goes without its body
    // (a body without a covered `content-digest` is refused, see below); no nonce in the vector.
    let policy = VerifyPolicy::new()
        .required_components(["date", "@authority", "content-type"])
        .unwrap()
        .nonce(NonceRequirement::Optional);
    let clock = Manual::new(T0 + 10);
    let app = app(
        VerifySignatureLayer::with_policy(KeyRing::new(rfc_key()), policy)
            .with_clock(clock.clock()),
    );
    let mut req = test_request(false);
    req.headers_mut()
        .insert("signature-input", HeaderValue::from_static(input));
    req.headers_mut().insert(
        "signature",
        HeaderValue::from_static("sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"),
    );
    let (status, kind, body) = send(&app, req).await;
    assert_eq!((status, kind), (StatusCode::OK, None), "{body}");
    assert_eq!(body, "test-shared-secret:");

    // The same with the body: refused, the digest is not covered.
    let mut req = test_request(true);
    req.headers_mut()
        .insert("signature-input", HeaderValue::from_static(input));
    req.headers_mut().insert(
        "signature",
        HeaderValue::from_static("sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"),
    );
    let (status, kind, _) = send(&app, req).await;
    assert_eq!(
        (status, kind),
        (
            StatusCode::UNAUTHORIZED,
            Some(SignatureErrorKind::MissingDigest)
        )
    );
}

/// Vectors computed independently (Python `hmac`) over the B.2 request: `@method`, `@path`,
/// `@query`, `@query-param` and `content-digest`, verified end to end with the body.
#[tokio::test]
async fn own_vectors_method_path_query_query_param_digest() {
    let cases = [
        (
            r#"sig1=("@method" "@authority" "@path" "@query" "content-digest");created=1618884473;expires=1618884773;nonce="test-nonce-1";keyid="test-shared-secret";alg="hmac-sha256""#,
            "rtjD7mbv1SrugJVR/rzkEPwKpWqTQubUEW0IyM9q6ko=",
            true,
        ),
        (
            r#"sig1=("@method" "@path" "@query-param";name="Pet" "@query-param";name="param");created=1618884473;nonce="qp-1";keyid="test-shared-secret";alg="hmac-sha256""#,
            "mJ7g9oWVYVfJ4IHuQbOAuHUE5wkuFj0uBNvQ+vAFOVA=",
            false,
        ),
    ];
    for (input, sig, with_body) in cases {
        let parsed = parse_signature_input(input.as_bytes()).unwrap();
        let base = signature_base(&test_request(with_body), &parsed[0], Scheme::Https).unwrap();
        assert_eq!(STANDARD.encode(rfc_key().sign(&base)), sig, "{input}");

        let policy = VerifyPolicy::new()
            .required_components(["@method", "@path"])
            .unwrap();
        let app = app(
            VerifySignatureLayer::with_policy(KeyRing::new(rfc_key()), policy)
                .with_clock(move || T0 + 5),
        );
        let mut req = test_request(with_body);
        req.headers_mut()
            .insert("signature-input", input.parse().unwrap());
        req.headers_mut()
            .insert("signature", format!("sig1=:{sig}:").parse().unwrap());
        let (status, kind, body) = send(&app, req).await;
        assert_eq!((status, kind), (StatusCode::OK, None), "{input}: {body}");
        if with_body {
            assert_eq!(body, r#"test-shared-secret:{"hello": "world"}"#);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sign with our layer, verify with our layer, tamper with everything

const NOW: u64 = 1_700_000_000;

fn key(id: &str, b: u8) -> Key {
    Key::hmac_sha256(id, &[b; 32]).unwrap()
}

fn signer(clock: &Manual) -> SignRequestLayer {
    SignRequestLayer::new(KeyRing::new(key("client-1", 7)))
        .with_components(["@method", "@authority", "@target-uri", "x-account"])
        .unwrap()
        .with_clock(clock.clock())
}

fn verifier(clock: &Manual) -> Router {
    app(VerifySignatureLayer::new(KeyRing::new(key("client-1", 7))).with_clock(clock.clock()))
}

fn post(body: &'static str) -> Request<Body> {
    Request::post("http://api.example.com/orders?id=1")
        .header("x-account", "acme")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn signed_requests_pass_and_reach_the_handler_unchanged() {
    let clock = Manual::new(NOW);
    let app = verifier(&clock);
    let req = sign(signer(&clock), post("{\"qty\": 3}")).await;
    assert!(req.headers().contains_key("content-digest"));
    let (status, _, body) = send(&app, into_body(req)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "client-1:{\"qty\": 3}");

    // Without a body: no digest needed.
    let get = Request::get("http://api.example.com/orders")
        .header("x-account", "acme")
        .body(Body::empty())
        .unwrap();
    let req = sign(signer(&clock), get).await;
    assert!(!req.headers().contains_key("content-digest"));
    let (status, _, body) = send(&app, into_body(req)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "client-1:");
}

async fn expect_refused(app: &Router, req: Request<Body>, want: SignatureErrorKind) {
    let (status, kind, body) = send(app, req).await;
    assert_eq!(kind, Some(want), "{body}");
    assert_eq!(status, want.status());
    if status == StatusCode::UNAUTHORIZED {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 401);
        assert_eq!(v["detail"], "The request signature is missing or invalid.");
    }
}

#[tokio::test]
async fn tampering_is_refused() {
    let clock = Manual::new(NOW);
    let app = verifier(&clock);
    let fresh = || async { into_body(sign(signer(&clock), post("{\"qty\": 3}")).await) };

    let mut r = fresh().await;
    *r.method_mut() = Method::PUT;
    expect_refused(&app, r, SignatureErrorKind::InvalidSignature).await;

    let mut r = fresh().await;
    *r.uri_mut() = "http://api.example.com/admin?id=1".parse().unwrap();
    expect_refused(&app, r, SignatureErrorKind::InvalidSignature).await;

    let mut r = fresh().await;
    *r.uri_mut() = "http://api.example.com/orders?id=2".parse().unwrap();
    expect_refused(&app, r, SignatureErrorKind::InvalidSignature).await;

    let mut r = fresh().await;
    r.headers_mut()
        .insert("x-account", HeaderValue::from_static("evil"));
    expect_refused(&app, r, SignatureErrorKind::InvalidSignature).await;

    // A second line of a covered header changes its value too.
    let mut r = fresh().await;
    r.headers_mut()
        .append("x-account", HeaderValue::from_static("evil"));
    expect_refused(&app, r, SignatureErrorKind::InvalidSignature).await;

    let mut r = fresh().await;
    r.headers_mut().remove("x-account");
    expect_refused(&app, r, SignatureErrorKind::ComponentUnavailable).await;

    let (p, _) = fresh().await.into_parts();
    let r = Request::from_parts(p, Body::from("{\"qty\": 300}"));
    expect_refused(&app, r, SignatureErrorKind::DigestMismatch).await;
}

#[tokio::test]
async fn body_without_covered_digest_is_refused() {
    let clock = Manual::new(NOW);
    let app = verifier(&clock);
    let get = Request::post("http://api.example.com/orders?id=1")
        .header("x-account", "acme")
        .body(Body::empty())
        .unwrap();
    let (p, _) = into_body(sign(signer(&clock), get).await).into_parts();
    let r = Request::from_parts(p, Body::from("smuggled"));
    expect_refused(&app, r, SignatureErrorKind::MissingDigest).await;

    // Digest covered but header removed.
    let (mut p, b) = into_body(sign(signer(&clock), post("x")).await).into_parts();
    p.headers.remove("content-digest");
    expect_refused(
        &app,
        Request::from_parts(p, b),
        SignatureErrorKind::MissingDigest,
    )
    .await;
}

#[tokio::test]
async fn wrong_secret_unknown_key_and_algorithm_mismatch() {
    let clock = Manual::new(NOW);
    let req = || async { into_body(sign(signer(&clock), post("{}")).await) };

    let other_secret =
        app(VerifySignatureLayer::new(KeyRing::new(key("client-1", 8))).with_clock(clock.clock()));
    expect_refused(
        &other_secret,
        req().await,
        SignatureErrorKind::InvalidSignature,
    )
    .await;

    let other_id =
        app(VerifySignatureLayer::new(KeyRing::new(key("client-2", 7))).with_clock(clock.clock()));
    expect_refused(&other_id, req().await, SignatureErrorKind::UnknownKey).await;

    let app = verifier(&clock);
    let mut r = req().await;
    let input = r.headers()["signature-input"]
        .to_str()
        .unwrap()
        .replace("hmac-sha256", "rsa-pss-sha512");
    r.headers_mut()
        .insert("signature-input", input.parse().unwrap());
    expect_refused(&app, r, SignatureErrorKind::AlgorithmMismatch).await;
}

#[tokio::test]
async fn time_window_expired_too_old_future_and_replay() {
    let clock = Manual::new(NOW);
    let app = verifier(&clock);

    // expires honoured.
    let short = signer(&clock).with_expires_in(Duration::from_secs(10));
    let r = into_body(sign(short, post("{}")).await);
    clock.set(NOW + 11);
    expect_refused(&app, r, SignatureErrorKind::Expired).await;

    // created older than 300 s.
    clock.set(NOW);
    let r = into_body(sign(signer(&clock), post("{}")).await);
    clock.set(NOW + 301);
    expect_refused(&app, r, SignatureErrorKind::TooOld).await;

    // created more than 60 s in the future.
    let future = Manual::new(NOW + 61);
    clock.set(NOW);
    let r = into_body(sign(signer(&future), post("{}")).await);
    expect_refused(&app, r, SignatureErrorKind::FromTheFuture).await;
    // ... but within the skew it passes.
    future.set(NOW + 60);
    let r = into_body(sign(signer(&future), post("{}")).await);
    assert_eq!(send(&app, r).await.0, StatusCode::OK);

    // The same signed request twice: the nonce is refused the second time.
    let r = into_body(sign(signer(&clock), post("{\"a\":1}")).await);
    let (p, b) = r.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    let again = Request::from_parts(p.clone(), Body::from(body.clone()));
    assert_eq!(
        send(&app, Request::from_parts(p, Body::from(body))).await.0,
        StatusCode::OK
    );
    expect_refused(&app, again, SignatureErrorKind::Replayed).await;

    // No nonce at all: refused by the default policy.
    let mut r = into_body(sign(signer(&clock), post("{}")).await);
    let input = r.headers()["signature-input"].to_str().unwrap().to_owned();
    let start = input.find(";nonce=").unwrap();
    let end = start + input[start + 1..].find(';').unwrap() + 1;
    let no_nonce = format!("{}{}", &input[..start], &input[end..]);
    r.headers_mut()
        .insert("signature-input", no_nonce.parse().unwrap());
    expect_refused(&app, r, SignatureErrorKind::MissingNonce).await;
}

#[tokio::test]
async fn malformed_headers_and_duplicate_labels() {
    let clock = Manual::new(NOW);
    let app = verifier(&clock);
    let req = || async { into_body(sign(signer(&clock), post("{}")).await) };

    let plain = Request::post("http://api.example.com/orders")
        .body(Body::from("x"))
        .unwrap();
    expect_refused(&app, plain, SignatureErrorKind::MissingSignature).await;

    let mut r = req().await;
    r.headers_mut().insert(
        "signature-input",
        HeaderValue::from_static("sig1=(\"@method\";created=1"),
    );
    expect_refused(&app, r, SignatureErrorKind::MalformedSignatureInput).await;

    let mut r = req().await;
    r.headers_mut()
        .insert("signature", HeaderValue::from_static("sig1=not-bytes"));
    expect_refused(&app, r, SignatureErrorKind::MalformedSignature).await;

    let mut r = req().await;
    r.headers_mut()
        .insert("signature", HeaderValue::from_static("sig1=:AAAA"));
    expect_refused(&app, r, SignatureErrorKind::MalformedSignature).await;

    // A second Signature-Input line reusing the label (RFC 8941 would keep the last one).
    let mut r = req().await;
    r.headers_mut().append(
        "signature-input",
        HeaderValue::from_static(
            "sig1=(\"@method\");created=1700000000;keyid=\"client-1\";nonce=\"n\"",
        ),
    );
    expect_refused(&app, r, SignatureErrorKind::DuplicateLabel).await;

    let mut r = req().await;
    let sig = r.headers()["signature"].clone();
    r.headers_mut().append("signature", sig);
    expect_refused(&app, r, SignatureErrorKind::DuplicateLabel).await;

    // A required component not covered.
    let narrow = SignRequestLayer::new(KeyRing::new(key("client-1", 7)))
        .with_components(["@method", "@authority"])
        .unwrap()
        .with_clock(clock.clock());
    let r = into_body(sign(narrow, post("{}")).await);
    expect_refused(&app, r, SignatureErrorKind::RequiredComponentNotCovered).await;
}

#[tokio::test]
async fn body_limit_is_413_and_never_buffered_past() {
    let clock = Manual::new(NOW);
    let policy = VerifyPolicy::new().body_limit(16);
    let app = app(
        VerifySignatureLayer::with_policy(KeyRing::new(key("client-1", 7)), policy)
            .with_clock(clock.clock()),
    );
    let r = into_body(sign(signer(&clock), post("0123456789abcdefXYZ")).await);
    expect_refused(&app, r, SignatureErrorKind::BodyTooLarge).await;

    // A streamed body without a length: refused when the limit is crossed.
    let (p, _) = into_body(sign(signer(&clock), post("0123456789abcdefXYZ")).await).into_parts();
    let chunks = chunked(&[b"0123456789", b"abcdefXYZ"]);
    let mut p = p;
    p.headers.remove("content-length");
    expect_refused(
        &app,
        Request::from_parts(p, chunks),
        SignatureErrorKind::BodyTooLarge,
    )
    .await;
}

/// A body streamed in chunks with no length known in advance.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
    }
}

fn chunked(chunks: &[&'static [u8]]) -> Body {
    Body::new(Chunks(
        chunks.iter().map(|c| Bytes::from_static(c)).collect(),
    ))
}

#[tokio::test(start_paused = true)]
async fn key_rotation_across_the_grace_period() {
    let clock = TokioClock::starting_at(NOW);
    let ring = KeyRing::new(key("2025-old", 1));
    let app = app(VerifySignatureLayer::new(ring.clone()).with_clock(clock));
    let old_signer = SignRequestLayer::new(KeyRing::new(key("2025-old", 1))).with_clock(clock);
    let req = || {
        Request::post("http://api.example.com/x")
            .body(Body::from("{}"))
            .unwrap()
    };

    assert_eq!(
        send(&app, into_body(sign(old_signer.clone(), req()).await))
            .await
            .0,
        StatusCode::OK
    );

    // Rotate: the new key signs, the old one still verifies for 7 days.
    ring.rotate(key("2026-new", 2), clock.now_unix()).unwrap();
    let new_signer = SignRequestLayer::new(ring.clone()).with_clock(clock);
    let r = into_body(sign(new_signer.clone(), req()).await);
    assert!(
        r.headers()["signature-input"]
            .to_str()
            .unwrap()
            .contains("keyid=\"2026-new\"")
    );
    assert_eq!(send(&app, r).await.0, StatusCode::OK);

    tokio::time::advance(Duration::from_secs(7 * 24 * 3600 - 60)).await;
    assert_eq!(
        send(&app, into_body(sign(old_signer.clone(), req()).await))
            .await
            .0,
        StatusCode::OK
    );

    tokio::time::advance(Duration::from_secs(61)).await;
    expect_refused(
        &app,
        into_body(sign(old_signer, req()).await),
        SignatureErrorKind::KeyNotValid,
    )
    .await;
    assert_eq!(
        send(&app, into_body(sign(new_signer, req()).await)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rejections_can_be_replaced_and_keep_the_typed_cause() {
    let layer = VerifySignatureLayer::new(KeyRing::new(key("k", 1))).with_rejection(
        |p: battlement::problem::Problem| {
            let mut r = Response::new(Body::from(p.slug()));
            *r.status_mut() = p.status();
            r
        },
    );
    let app = Router::new()
        .route("/", any(|| async { "ok" }))
        .layer(layer);
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.extensions().get::<SignatureError>().map(|e| e.kind()),
        Some(SignatureErrorKind::MissingSignature)
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"unauthorized");
}

// ---------------------------------------------------------------------------------------------
// Real sockets: hyper-util client + our sign layer -> axum server + our verify layer.

#[tokio::test]
async fn over_a_real_socket_with_and_without_a_body() {
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let secret = [9u8; 32];
    let server_ring = KeyRing::new(Key::hmac_sha256("svc-a", &secret).unwrap());
    let app = Router::new()
        .route(
            "/signed/{*rest}",
            any(
                |Extension(v): Extension<VerifiedSignature>, body: Bytes| async move {
                    format!("{} {}", v.key_id(), body.len())
                },
            ),
        )
        .layer(VerifySignatureLayer::new(server_ring));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Client::builder(TokioExecutor::new()).build_http::<BufferedBody>();
    let client = ServiceBuilder::new()
        .layer(SignRequestLayer::new(KeyRing::new(
            Key::hmac_sha256("svc-a", &secret).unwrap(),
        )))
        .service(http);

    let get = Request::get(format!("http://{addr}/signed/orders?page=2"))
        .body(Body::empty())
        .unwrap();
    let res = client.clone().oneshot(get).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"svc-a 0");

    let payload = vec![b'x'; 100_000];
    let post = Request::post(format!("http://{addr}/signed/upload"))
        .body(Body::from(payload))
        .unwrap();
    let res = client.clone().oneshot(post).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"svc-a 100000");

    // Unsigned over the same socket: 401.
    let plain = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let res = plain
        .request(
            Request::get(format!("http://{addr}/signed/orders"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks through the layer.

#[tokio::test]
async fn webhook_layer_verifies_refuses_replays_and_accepts_binary_bodies() {
    use battlement::signing::webhooks::{
        VerifyWebhookLayer, Webhook, WebhookError, WebhookErrorKind, WebhookMessage, WebhookSecret,
    };

    let hook =
        Webhook::new(WebhookSecret::from_whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap());
    let clock = Manual::new(NOW);
    let app = Router::new()
        .route(
            "/hooks",
            any(
                |Extension(m): Extension<WebhookMessage>, body: Bytes| async move {
                    format!("{} {:?}", m.id(), &body[..])
                },
            ),
        )
        .layer(
            VerifyWebhookLayer::new(hook.clone())
                .with_clock(clock.clock())
                .with_body_limit(64),
        );
    let kind = |res: &Response<Body>| res.extensions().get::<WebhookError>().map(|e| e.kind());
    let body: &'static [u8] = &[0xff, 0x00, 0xfe];
    let req = |id: &str, ts: u64, body: &'static [u8]| {
        let mut r = Request::post("/hooks").body(Body::from(body)).unwrap();
        r.headers_mut().extend(hook.headers(id, ts, body).unwrap());
        r
    };

    let res = app.clone().oneshot(req("msg_1", NOW, body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"msg_1 [255, 0, 254]");

    let res = app.clone().oneshot(req("msg_1", NOW, body)).await.unwrap();
    assert_eq!(
        (res.status(), kind(&res)),
        (StatusCode::UNAUTHORIZED, Some(WebhookErrorKind::Replayed))
    );

    let (p, _) = req("msg_2", NOW, body).into_parts();
    let res = app
        .clone()
        .oneshot(Request::from_parts(p, Body::from("tampered")))
        .await
        .unwrap();
    assert_eq!(kind(&res), Some(WebhookErrorKind::InvalidSignature));

    let res = app
        .clone()
        .oneshot(req("msg_3", NOW - 301, body))
        .await
        .unwrap();
    assert_eq!(kind(&res), Some(WebhookErrorKind::TooOld));
    let res = app
        .clone()
        .oneshot(req("msg_4", NOW + 301, body))
        .await
        .unwrap();
    assert_eq!(kind(&res), Some(WebhookErrorKind::FromTheFuture));

    let res = app
        .clone()
        .oneshot(req("msg_5", NOW, &[b'x'; 65]))
        .await
        .unwrap();
    assert_eq!(
        (res.status(), kind(&res)),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(WebhookErrorKind::BodyTooLarge)
        )
    );

    let res = app
        .oneshot(Request::post("/hooks").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(kind(&res), Some(WebhookErrorKind::MissingHeader));
}

// ---------------------------------------------------------------------------------------------
// Several signatures; signing errors.

#[tokio::test]
async fn the_verifier_picks_the_signature_its_policy_accepts() {
    let clock = Manual::new(NOW);
    let server = verifier(&clock);
    let mut r = into_body(sign(signer(&clock), post("{}")).await);
    let input = r.headers()["signature-input"].to_str().unwrap().to_owned();
    let sig = r.headers()["signature"].to_str().unwrap().to_owned();
    // An extra signature first, by a key this server does not know.
    let bogus_input =
        format!(r#"other=("@method");created={NOW};keyid="someone-else";nonce="x", {input}"#);
    let bogus_sig = format!("other=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:, {sig}");
    r.headers_mut()
        .insert("signature-input", bogus_input.parse().unwrap());
    r.headers_mut()
        .insert("signature", bogus_sig.parse().unwrap());
    let (p, b) = r.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    assert_eq!(
        send(
            &server,
            Request::from_parts(p.clone(), Body::from(body.clone()))
        )
        .await
        .0,
        StatusCode::OK
    );

    // A policy pinned to the label `other` refuses the same request.
    let pinned = app(VerifySignatureLayer::with_policy(
        KeyRing::new(key("client-1", 7)),
        VerifyPolicy::new().label("other"),
    )
    .with_clock(clock.clock()));
    let (status, kind, _) = send(&pinned, Request::from_parts(p, Body::from(body))).await;
    assert_eq!(
        (status, kind),
        (
            StatusCode::UNAUTHORIZED,
            Some(SignatureErrorKind::UnknownKey)
        )
    );
}

#[tokio::test]
async fn signing_errors_are_typed() {
    use battlement::signing::{SignError, SignErrorKind};
    let clock = Manual::new(NOW);
    let svc = |layer: SignRequestLayer| {
        ServiceBuilder::new().layer(layer).service(service_fn(
            |r: Request<BufferedBody>| async move { Ok::<_, Infallible>(r) },
        ))
    };
    let err = svc(signer(&clock).with_body_limit(4))
        .oneshot(post("0123456789"))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<SignError>().map(SignError::kind),
        Some(SignErrorKind::BodyTooLarge)
    );

    // A streamed body over the limit, without a length.
    let mut req = post("");
    *req.body_mut() = chunked(&[b"0123", b"4567"]);
    let err = svc(signer(&clock).with_body_limit(6))
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<SignError>().map(SignError::kind),
        Some(SignErrorKind::BodyTooLarge)
    );

    let no_header = Request::post("http://api.example.com/x")
        .body(Body::empty())
        .unwrap();
    let err = svc(signer(&clock)).oneshot(no_header).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<SignError>().map(SignError::kind),
        Some(SignErrorKind::ComponentUnavailable)
    );
}
