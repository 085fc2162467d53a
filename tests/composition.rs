//! Every layer together on one axum `Router`, in the order of DESIGN.md §3: each rejection made
//! by an inner layer still carries the request id and the security headers, as problem+json
//! whose `request_id` is the one in the header.

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use axum::{
    Extension, Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::StatusCode,
    routing::{get, post},
};
use battlement::{
    auth::api_key::{ApiKeyLayer, ApiKeys, Principal, PrincipalId, hash_key},
    body_limit::BodyLimitLayer,
    circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer},
    https::HttpsRedirectLayer,
    net::TrustedProxies,
    rate_limit::{ExtensionKey, Limit, PeerIp, Quota, RateLimitLayer},
    request_id::{RequestId, SetRequestIdLayer},
    security_headers::SecurityHeaders,
};
use http::{Request, Response, header};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

const KEY: &str = "ck_test_0123456789abcdef0123456789abcdef";

fn app() -> Router {
    let principal = Principal::new(PrincipalId::new("tenant-a").unwrap());
    let keys = ApiKeys::builder()
        .key(hash_key(KEY), &principal)
        .build()
        .unwrap();
    let per_ip =
        Quota::per_minute(NonZeroU32::new(60).unwrap()).with_burst(NonZeroU32::new(20).unwrap());
    let per_key =
        Quota::per_minute(NonZeroU32::new(60).unwrap()).with_burst(NonZeroU32::new(2).unwrap());
    let breaker =
        Breaker::new(BreakerConfig::consecutive_failures(1).cooldown(Duration::from_secs(30)))
            .unwrap();

    let keyed = Router::new()
        .route(
            "/keyed/me",
            get(|Extension(p): Extension<Principal>| async move { p.id().to_string() }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ApiKeyLayer::new(keys))
                .layer(RateLimitLayer::new(Limit::new(
                    ExtensionKey::<Principal>::new(),
                    per_key,
                ))),
        );
    let fragile = Router::new()
        .route(
            "/fragile",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(CircuitBreakerLayer::new(breaker).server());

    Router::new()
        .route("/echo", post(|b: Bytes| async move { b }))
        .route("/healthz", get(|| async { "ok" }))
        .merge(keyed)
        .merge(fragile)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new())
                .layer(
                    SecurityHeaders::web()
                        .trusted_proxies(TrustedProxies::loopback())
                        .layer(),
                )
                .layer(
                    HttpsRedirectLayer::new(["app.example"])
                        .unwrap()
                        .trusted_proxies(TrustedProxies::loopback())
                        .exempt_path("/healthz")
                        .unwrap(),
                )
                .layer(BodyLimitLayer::new(64))
                .layer(RateLimitLayer::new(Limit::new(PeerIp::new(), per_ip))),
        )
}

/// A request from a client on loopback that came in over TLS at the proxy.
fn request(method: &str, path: &str, body: Body) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "app.example")
        .header("x-forwarded-proto", "https")
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
    req
}

async fn check_problem(res: Response<Body>, status: StatusCode) -> serde_json::Value {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    let id = headers
        .get("x-request-id")
        .expect("every response carries the request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        res.extensions().get::<RequestId>().map(|r| r.as_str()),
        Some(id.as_str())
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert!(headers.contains_key("content-security-policy"));
    assert_eq!(
        headers["strict-transport-security"], "max-age=31536000; includeSubDomains",
        "HTTPS (from a trusted proxy) gets HSTS on rejections too"
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], status.as_u16());
    assert_eq!(json["request_id"], id.as_str());
    json
}

#[tokio::test]
async fn body_limit_rejection_carries_id_and_headers() {
    let res = app()
        .oneshot(request("POST", "/echo", Body::from(vec![b'x'; 65])))
        .await
        .unwrap();
    check_problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413_through_the_stack() {
    let stream = Body::from(vec![b'x'; 200]).into_data_stream();
    let res = app()
        .oneshot(request("POST", "/echo", Body::from_stream(stream)))
        .await
        .unwrap();
    check_problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn auth_rejection_carries_id_and_headers() {
    let res = app()
        .oneshot(request("GET", "/keyed/me", Body::empty()))
        .await
        .unwrap();
    let json = check_problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(!json.to_string().contains(KEY));
}

#[tokio::test]
async fn per_principal_rate_limit_after_auth() {
    let app = app();
    let authed = || {
        let mut req = request("GET", "/keyed/me", Body::empty());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {KEY}").parse().unwrap(),
        );
        req
    };
    for _ in 0..2 {
        let res = app.clone().oneshot(authed()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"tenant-a");
    }
    let res = app.oneshot(authed()).await.unwrap();
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    check_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn per_ip_rate_limit_rejection_carries_id_and_headers() {
    let app = app();
    for _ in 0..20 {
        let res = app
            .clone()
            .oneshot(request("GET", "/healthz", Body::empty()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .oneshot(request("GET", "/healthz", Body::empty()))
        .await
        .unwrap();
    check_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn open_breaker_rejection_carries_id_and_headers() {
    let app = app();
    let res = app
        .clone()
        .oneshot(request("GET", "/fragile", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let res = app
        .oneshot(request("GET", "/fragile", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.headers()[header::RETRY_AFTER], "30");
    check_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn host_attack_on_the_redirect_carries_id_and_headers() {
    // Plain HTTP (no forwarded proto) to a host not on the list: 421, never a redirect.
    let mut req = Request::get("/echo")
        .header(header::HOST, "evil.example")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(res.headers().get(header::LOCATION).is_none());
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        res.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn plain_http_is_redirected_with_the_request_id() {
    let mut req = Request::get("/keyed/me?x=1")
        .header(header::HOST, "app.example")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        res.headers()[header::LOCATION],
        "https://app.example/keyed/me?x=1"
    );
    assert!(res.headers().contains_key("x-request-id"));
}

/// `Router::nest` strips the prefix before the nested router's layers run; the signature covers
/// the path the client sent, so the verify layer reads axum's `OriginalUri`.
#[tokio::test]
async fn signatures_verify_inside_a_nested_router() {
    use battlement::signing::{BufferedBody, Key, KeyRing, SignRequestLayer, VerifySignatureLayer};
    use tower::service_fn;

    let ring = KeyRing::new(Key::hmac_sha256("partner-1", &[9u8; 32]).unwrap());
    let signed = Router::new()
        .route("/orders", post(|b: Bytes| async move { b }))
        .layer(VerifySignatureLayer::new(ring.clone()));
    let app = Router::new().nest("/signed", signed);

    let signed_req = ServiceBuilder::new()
        .layer(SignRequestLayer::new(ring))
        .service(service_fn(|req: Request<BufferedBody>| async move {
            Ok::<_, std::convert::Infallible>(req)
        }))
        .oneshot(
            Request::post("http://api.example/signed/orders")
                .body(Body::from("{\"qty\":1}"))
                .unwrap(),
        )
        .await
        .unwrap();
    let (mut parts, body) = signed_req.into_parts();
    // As a server sees it: origin-form URI, authority in `Host`.
    parts.uri = "/signed/orders".parse().unwrap();
    parts
        .headers
        .insert(header::HOST, "api.example".parse().unwrap());
    let req = Request::from_parts(parts, Body::from(body.into_bytes()));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Without a signature the nested route refuses.
    let res = app
        .oneshot(
            Request::post("/signed/orders")
                .header(header::HOST, "api.example")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
