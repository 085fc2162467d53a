//! Integration tests of `auth::api_key` on real axum routers (and a real socket).

use std::{
    collections::HashSet,
    io::Write,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Extension, Router, body::Body, routing::get};
use battlement::auth::api_key::{
    ApiKeyLayer, ApiKeyRejection, ApiKeyRejectionKind, ApiKeys, ApiKeysConfig, Principal,
    PrincipalId, generate_key, hash_key,
};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const KEY: &str = "bk_test_4q2vFZ8nJ0yXoWcRk1uB7sLdHt3eGmPa9YiQzNhC5Vx";
const OLD_KEY: &str = "bk_test_old_Qm2PzX8cVb4NnL1kJ7hG3fD9sA6wE5rT0yUiOp";
const READER_KEY: &str = "bk_test_reader_T5gY7uJ9kL2mN4bV6cX8zQ1wE3rR0tY";

/// A clock tests move by hand (tokio's paused time does not move `SystemTime`).
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn at(secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(secs)))
    }
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// `billing` has two keys (the old one valid until t=2000) and the scope `invoices:write`;
/// `reader` has one key, no write scope, and expires at t=5000.
fn keys() -> ApiKeys {
    let billing = Principal::with_scopes(
        PrincipalId::new("billing").unwrap(),
        ["invoices:read", "invoices:write"],
        None,
    )
    .unwrap();
    let reader = Principal::with_scopes(
        PrincipalId::new("reader").unwrap(),
        ["invoices:read"],
        Some(t(5000)),
    )
    .unwrap();
    ApiKeys::builder()
        .key(hash_key(KEY), &billing)
        .key_until(hash_key(OLD_KEY), &billing, t(2000))
        .key(hash_key(READER_KEY), &reader)
        .build()
        .unwrap()
}

fn layer(clock: &ManualClock) -> ApiKeyLayer {
    let c = clock.clone();
    ApiKeyLayer::new(keys()).with_clock(move || c.now())
}

async fn whoami(Extension(p): Extension<Principal>) -> String {
    p.id().to_string()
}

fn app(layer: ApiKeyLayer) -> Router {
    Router::new().route("/me", get(whoami)).layer(layer)
}

fn req(auth: Option<&[u8]>) -> Request<Body> {
    let mut b = Request::get("/me");
    if let Some(v) = auth {
        b = b.header(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
    }
    b.body(Body::empty()).unwrap()
}

async fn body(res: Response<Body>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn bearer(key: &str) -> Vec<u8> {
    format!("Bearer {key}").into_bytes()
}

/// Asserts a 401 with the expected cause and challenge, and returns the body.
async fn assert_401(res: Response<Body>, kind: ApiKeyRejectionKind, invalid_token: bool) -> String {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    if invalid_token {
        assert_eq!(challenge, r#"Bearer realm="api", error="invalid_token""#);
    } else {
        assert_eq!(challenge, r#"Bearer realm="api""#);
    }
    let cause = res.extensions().get::<ApiKeyRejection>().unwrap();
    assert_eq!(cause.kind(), kind);
    let text = body(res).await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], 401);
    assert!(v["type"].as_str().unwrap().ends_with("#unauthorized"));
    text
}

#[tokio::test]
async fn valid_key_reaches_the_handler_with_its_principal() {
    let clock = ManualClock::at(1000);
    let res = app(layer(&clock))
        .oneshot(req(Some(&bearer(KEY))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "billing");
    // Scheme is case-insensitive.
    let res = app(layer(&clock))
        .oneshot(req(Some(format!("bearer {KEY}").as_bytes())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_key_is_401_with_a_challenge() {
    let clock = ManualClock::at(1000);
    let res = app(layer(&clock)).oneshot(req(None)).await.unwrap();
    assert_401(res, ApiKeyRejectionKind::Missing, false).await;
}

#[tokio::test]
async fn wrong_key_is_401_invalid_token() {
    let clock = ManualClock::at(1000);
    let wrong = format!("{}y", &KEY[..KEY.len() - 1]);
    assert_ne!(wrong, KEY);
    let res = app(layer(&clock))
        .oneshot(req(Some(&bearer(&wrong))))
        .await
        .unwrap();
    let text = assert_401(res, ApiKeyRejectionKind::Unknown, true).await;
    assert!(!text.contains(&wrong));
}

#[tokio::test]
async fn malformed_headers_are_401() {
    let clock = ManualClock::at(1000);
    let ten_kib = format!("Bearer {}", "k".repeat(10 * 1024));
    let cases: [(&[u8], bool); 6] = [
        (b"Bearer", true),
        (b"Bearer    ", true),
        (b"Basic dXNlcjpwYXNzd29yZA==", false),
        (b"Bearer bk_test_\xe9\xff", true),
        (b"Bearer two words", true),
        (ten_kib.as_bytes(), true),
    ];
    for (value, invalid_token) in cases {
        let res = app(layer(&clock)).oneshot(req(Some(value))).await.unwrap();
        assert_401(res, ApiKeyRejectionKind::Malformed, invalid_token).await;
    }
    // Two Authorization headers, one of them valid: refused, not guessed at.
    let r = Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::AUTHORIZATION, "Bearer other")
        .body(Body::empty())
        .unwrap();
    let res = app(layer(&clock)).oneshot(r).await.unwrap();
    assert_401(res, ApiKeyRejectionKind::Malformed, true).await;
}

#[tokio::test]
async fn expired_keys_and_principals_are_401() {
    let clock = ManualClock::at(6000);
    let res = app(layer(&clock))
        .oneshot(req(Some(&bearer(READER_KEY))))
        .await
        .unwrap();
    assert_eq!(
        res.extensions()
            .get::<ApiKeyRejection>()
            .unwrap()
            .principal()
            .map(PrincipalId::as_str),
        Some("reader")
    );
    assert_401(res, ApiKeyRejectionKind::Expired, true).await;
    // Just before expiry it worked.
    clock.set(5000);
    let res = app(layer(&clock))
        .oneshot(req(Some(&bearer(READER_KEY))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn rotation_two_keys_one_principal() {
    let clock = ManualClock::at(1000);
    let app = app(layer(&clock));
    for key in [KEY, OLD_KEY] {
        let res = app.clone().oneshot(req(Some(&bearer(key)))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(res).await, "billing");
    }
    // The old key passes its not-after; the new one keeps working.
    clock.set(2001);
    let res = app
        .clone()
        .oneshot(req(Some(&bearer(OLD_KEY))))
        .await
        .unwrap();
    assert_401(res, ApiKeyRejectionKind::Expired, true).await;
    let res = app.oneshot(req(Some(&bearer(KEY)))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn custom_header() {
    let clock = ManualClock::at(1000);
    let app = app(layer(&clock).header("x-api-key").unwrap());
    let r = Request::get("/me")
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(r).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "billing");
    let r = Request::get("/me")
        .header("x-api-key", "nope")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(r).await.unwrap();
    assert_401(res, ApiKeyRejectionKind::Unknown, true).await;
    // Bearer still works alongside.
    let res = app.oneshot(req(Some(&bearer(KEY)))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Only the custom header when bearer is off.
    let app = Router::new().route("/me", get(whoami)).layer(
        layer(&clock)
            .header("x-api-key")
            .unwrap()
            .accept_bearer(false),
    );
    let res = app.oneshot(req(Some(&bearer(KEY)))).await.unwrap();
    assert_401(res, ApiKeyRejectionKind::Missing, false).await;
}

#[tokio::test]
async fn missing_scope_is_403() {
    let clock = ManualClock::at(1000);
    let app = app(layer(&clock).require_scopes(["invoices:write"]).unwrap());
    let res = app
        .clone()
        .oneshot(req(Some(&bearer(READER_KEY))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="insufficient_scope", scope="invoices:write""#
    );
    let cause = res.extensions().get::<ApiKeyRejection>().unwrap();
    assert_eq!(cause.kind(), ApiKeyRejectionKind::InsufficientScope);
    let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert!(v["type"].as_str().unwrap().ends_with("#forbidden"));
    let res = app.oneshot(req(Some(&bearer(KEY)))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn custom_rejection_keeps_the_cause() {
    let clock = ManualClock::at(1000);
    let layer = layer(&clock).with_rejection(|p: battlement::problem::Problem| {
        let mut res = Response::new(Body::from(p.slug()));
        *res.status_mut() = p.status();
        res.headers_mut().extend(p.headers().clone());
        res
    });
    let app = Router::new().route("/me", get(whoami)).layer(layer);
    let res = app.oneshot(req(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        res.extensions().get::<ApiKeyRejection>().unwrap().kind(),
        ApiKeyRejectionKind::Missing
    );
    assert_eq!(body(res).await, "unauthorized");
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn keys_and_hashes_never_reach_the_logs_or_bodies() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::at(6000);
    let app = app(layer(&clock).require_scopes(["invoices:write"]).unwrap());
    let wrong = "bk_test_wrong_7hG3fD9sA6wE5rT0yUiOpQm2PzX8cVb4NnL";
    let mut bodies = String::new();
    // unknown, expired (old key and reader), insufficient scope is reached only by a live key.
    for key in [wrong, OLD_KEY, READER_KEY] {
        let res = app.clone().oneshot(req(Some(&bearer(key)))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        bodies.push_str(&body(res).await);
    }
    clock.set(1000);
    let res = app
        .clone()
        .oneshot(req(Some(&bearer(READER_KEY))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    bodies.push_str(&body(res).await);
    let res = app.oneshot(req(None)).await.unwrap();
    bodies.push_str(&body(res).await);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("API key authentication failed").count(),
        5,
        "{logs}"
    );
    for reason in ["unknown", "expired", "insufficient_scope", "missing"] {
        assert!(logs.contains(reason), "{reason} not in {logs}");
    }
    assert!(logs.contains("billing") && logs.contains("reader"));
    assert!(logs.contains(&hash_key(wrong).to_hex()[..8]));
    for key in [wrong, OLD_KEY, READER_KEY] {
        let hash = hash_key(key).to_hex();
        for text in [&logs, &bodies] {
            assert!(!text.contains(key));
            assert!(!text.contains(&hash));
            assert!(!text.contains(&hash[..16]));
        }
    }
}

#[test]
fn generated_keys_have_the_prefix_and_are_unique() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let g = generate_key("bk_live_").unwrap();
        assert!(g.key().starts_with("bk_live_"));
        assert_eq!(hash_key(g.key()), g.hash());
        let (key, hash_hex) = g.into_parts();
        assert_eq!(hash_hex, hash_key(&key).to_hex());
        assert!(seen.insert(key));
    }
    assert!(generate_key("bk live").is_err());
}

#[tokio::test]
async fn generated_key_from_config_authenticates() {
    let (key, hash_hex) = generate_key("bk_live_").unwrap().into_parts();
    let text = format!(
        r#"
        [[principals]]
        id = "svc-reports"
        scopes = ["reports:read"]
        keys = [{{ hash = "{hash_hex}", not_after = "2999-01-01T00:00:00Z" }}]
        "#
    );
    let config: ApiKeysConfig = toml::from_str(&text).unwrap();
    let app = app(ApiKeyLayer::new(ApiKeys::from_config(&config).unwrap()));
    let res = app.oneshot(req(Some(&bearer(&key)))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "svc-reports");
}

#[tokio::test]
async fn hash_list_principals() {
    let keys = ApiKeys::from_hash_list(&format!(
        "{},{}",
        hash_key(KEY).to_hex(),
        hash_key(OLD_KEY).to_hex()
    ))
    .unwrap();
    let res = app(ApiKeyLayer::new(keys))
        .oneshot(req(Some(&bearer(OLD_KEY))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body(res).await,
        format!("key-{}", hash_key(OLD_KEY).short())
    );
}

/// `Router::layer` accepts the layer and it serves over a real socket; the audit event names
/// the peer address from `ConnectInfo`.
#[tokio::test]
async fn serves_over_loopback_with_connect_info() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = Router::new()
        .route("/me", get(whoami))
        .layer(ApiKeyLayer::new(keys()).realm("battlement").unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    async fn fetch(addr: SocketAddr, auth: Option<&str>) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!("GET /me HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    let ok = fetch(addr, Some(&format!("Bearer {KEY}"))).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("billing"));
    let denied = fetch(addr, Some("Bearer nope")).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(
        denied.contains(r#"www-authenticate: Bearer realm="battlement", error="invalid_token""#)
    );
    assert!(denied.contains("application/problem+json"));
    server.abort();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("127.0.0.1"), "{logs}");
}

#[test]
fn layer_and_service_are_send_sync_clone() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<ApiKeyLayer>();
    check::<
        battlement::auth::api_key::ApiKey<
            axum::routing::Route,
            ApiKeys,
            battlement::problem::DefaultRejection,
        >,
    >();
    check::<Principal>();
    check::<PrincipalId>();
}
