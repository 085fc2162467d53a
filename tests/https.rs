//! Integration tests of `https` on real axum routers (and a real socket for the proxy rules).

#[path = "support/serve.rs"]
mod serve;

use std::net::SocketAddr;

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Method, Request, StatusCode, header},
    response::Response,
    routing::any,
};
use battlement::{
    https::{HostNotAllowed, HttpsRedirectLayer, Redirected},
    net::{PeerAddr, Scheme, TrustedProxies},
    problem::Problem,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn app(layer: HttpsRedirectLayer) -> Router {
    Router::new()
        .route("/", any(|| async { "app" }))
        .route("/{*rest}", any(|| async { "app" }))
        .layer(layer)
}

fn example() -> HttpsRedirectLayer {
    HttpsRedirectLayer::new(["example.com", "*.api.example.com"]).unwrap()
}

fn req(method: Method, uri: &str, host: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

fn location(res: &Response) -> &str {
    res.headers()[header::LOCATION].to_str().unwrap()
}

async fn assert_passed(res: Response) {
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "app");
}

async fn assert_421(res: Response) {
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(!res.headers().contains_key(header::LOCATION));
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(res.extensions().get::<HostNotAllowed>().is_some());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 421);
    assert!(!String::from_utf8_lossy(&body).contains("evil"));
}

#[tokio::test]
async fn redirects_with_the_same_path_and_query() {
    let app = app(example());
    for (method, status) in [
        (Method::GET, StatusCode::MOVED_PERMANENTLY),
        (Method::HEAD, StatusCode::MOVED_PERMANENTLY),
        (Method::POST, StatusCode::PERMANENT_REDIRECT),
        (Method::PUT, StatusCode::PERMANENT_REDIRECT),
        (Method::DELETE, StatusCode::PERMANENT_REDIRECT),
    ] {
        let res = send(&app, req(method.clone(), "/a/b?x=1&y=%20", "example.com")).await;
        assert_eq!(res.status(), status, "{method}");
        assert_eq!(location(&res), "https://example.com/a/b?x=1&y=%20");
        assert_eq!(res.extensions().get::<Redirected>().unwrap().status, status);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());
    }
    // The plain port is dropped, the host lowercased; `//evil.com` stays a path on our host.
    let res = send(&app, req(Method::GET, "//evil.com/x", "EXAMPLE.com:8080")).await;
    assert_eq!(location(&res), "https://example.com//evil.com/x");
}

#[tokio::test]
async fn https_port_override() {
    let app = app(example().https_port(8443).unwrap());
    let res = send(&app, req(Method::GET, "/x?q", "example.com:8080")).await;
    assert_eq!(location(&res), "https://example.com:8443/x?q");
    let app = self::app(example().https_port(443).unwrap());
    let res = send(&app, req(Method::GET, "/x", "example.com")).await;
    assert_eq!(location(&res), "https://example.com/x");
}

#[tokio::test]
async fn wildcard_hosts() {
    let app = app(example());
    for host in [
        "v1.api.example.com",
        "a.b.api.example.com",
        "V1.API.example.com.",
    ] {
        let res = send(&app, req(Method::GET, "/", host)).await;
        assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY, "{host}");
    }
    assert_eq!(
        location(&send(&app, req(Method::GET, "/", "V1.API.example.com.")).await),
        "https://v1.api.example.com/"
    );
    for host in [
        "api.example.com",
        "www.example.com",
        "evilapi.example.com",
        "api.example.com.evil.com",
    ] {
        assert_421(send(&app, req(Method::GET, "/", host)).await).await;
    }
}

#[tokio::test]
async fn host_attacks_get_421_never_a_redirect() {
    let app = app(example());
    for host in [
        "evil.com",
        "example.com@evil.com",
        "example.com/evil",
        "example.com\\evil",
        "example.com:80@evil",
        "example.com evil",
        " example.com",
        "example.com.evil.com",
        "example.com:99999",
        "",
    ] {
        assert_421(send(&app, req(Method::GET, "/", host)).await).await;
    }
    // obs-text (CR/LF cannot be put in a header value at all).
    let mut r = req(Method::GET, "/", "example.com");
    r.headers_mut().insert(
        header::HOST,
        HeaderValue::from_bytes(b"example.com\x80evil.com").unwrap(),
    );
    assert_421(send(&app, r).await).await;
    // No host at all, or two.
    let r = Request::get("/").body(Body::empty()).unwrap();
    let res = send(&app, r).await;
    assert!(
        res.extensions()
            .get::<HostNotAllowed>()
            .unwrap()
            .is_malformed()
    );
    assert_421(res).await;
    let mut r = req(Method::GET, "/", "example.com");
    r.headers_mut()
        .append(header::HOST, HeaderValue::from_static("evil.com"));
    assert_421(send(&app, r).await).await;
    // Userinfo in an absolute-form target.
    let r = Request::get("http://example.com@evil.com/")
        .body(Body::empty())
        .unwrap();
    assert_421(send(&app, r).await).await;
    let res = send(&app, req(Method::GET, "/", "evil.com")).await;
    assert!(
        !res.extensions()
            .get::<HostNotAllowed>()
            .unwrap()
            .is_malformed()
    );
}

#[tokio::test]
async fn uri_authority_wins_over_host_header() {
    // HTTP/2 (`:authority`) and absolute-form targets carry the host in the URI.
    let app = app(example());
    let r = req(Method::GET, "http://example.com/p?q", "evil.com");
    let res = send(&app, r).await;
    assert_eq!(location(&res), "https://example.com/p?q");
    let r = req(Method::GET, "http://evil.com/p", "example.com");
    assert_421(send(&app, r).await).await;
}

#[tokio::test]
async fn exempt_paths_pass_on_plain_http() {
    let app = app(example()
        .exempt_path("/healthz")
        .unwrap()
        .exempt_prefix("/.well-known/acme-challenge")
        .unwrap());
    for path in [
        "/healthz",
        "/healthz?verbose",
        "/.well-known/acme-challenge",
        "/.well-known/acme-challenge/token123",
    ] {
        // Even with a host we do not redirect to: the path is served as is.
        assert_passed(send(&app, req(Method::GET, path, "10.0.0.7:8080")).await).await;
    }
    for path in [
        "/healthz/live",
        "/healthzz",
        "/.well-known/acme-challengex",
        "/.well-known/acme-challenge/../../admin",
        "/.well-known/acme-challenge/%2e%2e/admin",
    ] {
        let res = send(&app, req(Method::GET, path, "example.com")).await;
        assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
    }
}

#[tokio::test]
async fn https_requests_pass() {
    let app = app(example());
    // A TLS acceptor's extension.
    let mut r = req(Method::POST, "/x", "evil.com");
    r.extensions_mut().insert(Scheme::Https);
    assert_passed(send(&app, r).await).await;
    // The request target's scheme (an absolute-form target, HTTP/2 `:scheme`) is the client's
    // claim: without the extension or a trusted proxy, redirected.
    let r = req(Method::GET, "https://example.com/x", "example.com");
    let res = send(&app, r).await;
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location(&res), "https://example.com/x");
    let r = req(Method::POST, "https://example.com/x", "example.com");
    assert_eq!(send(&app, r).await.status(), StatusCode::PERMANENT_REDIRECT);
    // The extension is authoritative: a plain listener that says so is redirected.
    let mut r = req(Method::GET, "https://example.com/x", "example.com");
    r.extensions_mut().insert(Scheme::Http);
    assert_eq!(send(&app, r).await.status(), StatusCode::MOVED_PERMANENTLY);
}

fn from_peer(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = req(Method::GET, "/x", "example.com");
    for (k, v) in headers {
        r.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    r
}

#[tokio::test]
async fn forwarded_proto_only_from_trusted_proxies() {
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let app = app(example().trusted_proxies(proxies));
    let xfp = [("x-forwarded-proto", "https")];
    assert_passed(send(&app, from_peer("10.1.2.3:5000", &xfp)).await).await;
    let res = send(&app, from_peer("203.0.113.9:5000", &xfp)).await;
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    // No peer address known: nothing forwarded is believed.
    let mut r = req(Method::GET, "/x", "example.com");
    r.headers_mut()
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    assert_eq!(send(&app, r).await.status(), StatusCode::MOVED_PERMANENTLY);
    // RFC 7239, with the host the proxy received.
    let fwd = [("forwarded", "for=198.51.100.7;proto=https")];
    assert_passed(send(&app, from_peer("10.1.2.3:5000", &fwd)).await).await;
    let fwd = [(
        "forwarded",
        "for=198.51.100.7;proto=http;host=www.api.example.com",
    )];
    let res = send(&app, from_peer("10.1.2.3:5000", &fwd)).await;
    assert_eq!(location(&res), "https://www.api.example.com/x");
    let fwd = [("forwarded", "for=198.51.100.7;proto=http;host=evil.com")];
    assert_421(send(&app, from_peer("10.1.2.3:5000", &fwd)).await).await;
    // Without trusted proxies the same headers change nothing.
    let app = self::app(example());
    let res = send(&app, from_peer("10.1.2.3:5000", &xfp)).await;
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
}

#[tokio::test]
async fn allow_any_host_redirects_valid_hosts_only() {
    let app = app(HttpsRedirectLayer::allow_any_host());
    let res = send(&app, req(Method::GET, "/", "anything.test")).await;
    assert_eq!(location(&res), "https://anything.test/");
    assert_421(send(&app, req(Method::GET, "/", "example.com@evil.com")).await).await;
}

#[tokio::test]
async fn the_rejection_can_be_replaced() {
    let layer = example().with_rejection(|p: Problem| {
        let mut res = Response::new(Body::from("wrong host"));
        *res.status_mut() = p.status();
        res
    });
    let app = Router::new()
        .route("/", any(|| async { "app" }))
        .layer(layer);
    let res = send(&app, req(Method::GET, "/", "evil.com")).await;
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(res.extensions().get::<HostNotAllowed>().is_some());
}

#[tokio::test]
async fn over_a_real_socket_with_connect_info() {
    // The peer is 127.0.0.1, read from axum's `ConnectInfo`.
    let serve = |layer: HttpsRedirectLayer| async move { serve::serve(app(layer)).await };
    let get = |addr: SocketAddr, proto: Option<&'static str>| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut r = http::Request::get("/x?y=1")
            .header(header::HOST, "example.com")
            .body(Body::empty())
            .unwrap();
        if let Some(proto) = proto {
            r.headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static(proto));
        }
        sender.send_request(r).await.unwrap()
    };

    let trusting = serve(example().trusted_proxies(TrustedProxies::loopback())).await;
    assert_eq!(get(trusting, Some("https")).await.status(), StatusCode::OK);
    let res = get(trusting, Some("http")).await;
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location(&res.map(Body::new)), "https://example.com/x?y=1");
    let res = get(trusting, None).await;
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);

    let untrusting = serve(example()).await;
    assert_eq!(
        get(untrusting, Some("https")).await.status(),
        StatusCode::MOVED_PERMANENTLY
    );
}

/// A plain HTTP/1.1 connection whose request-target is absolute-form `https://...`: the
/// connection is plain, so the request is redirected (and gets no HSTS) whatever the target
/// says; from the trusted proxy only its `X-Forwarded-Proto` counts.
#[tokio::test]
async fn absolute_form_https_targets_on_plain_connections_are_redirected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let raw = |addr: SocketAddr, head: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf).to_ascii_lowercase()
    };
    let untrusting = serve::serve(app(example())).await;
    let text = raw(
        untrusting,
        "GET https://example.com/x?y=1 HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("http/1.1 301"), "{text}");
    assert!(
        text.contains("location: https://example.com/x?y=1\r\n"),
        "{text}"
    );
    let text = raw(
        untrusting,
        "POST https://example.com/x HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("http/1.1 308"), "{text}");

    // Behind the trusted proxy: its `X-Forwarded-Proto: http` wins over the target's `https`.
    let trusting = serve::serve(app(example().trusted_proxies(TrustedProxies::loopback()))).await;
    let text = raw(
        trusting,
        "GET https://example.com/x HTTP/1.1\r\nhost: example.com\r\nx-forwarded-proto: http\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("http/1.1 301"), "{text}");
    let text = raw(
        trusting,
        "GET /x HTTP/1.1\r\nhost: example.com\r\nx-forwarded-proto: https\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("http/1.1 200"), "{text}");

    // HTTP/2 without TLS (prior knowledge) claiming `:scheme = https`: redirected too.
    let stream = tokio::net::TcpStream::connect(untrusting).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = http::Request::get("https://example.com/x")
        .body(Body::empty())
        .unwrap();
    let res = sender.send_request(r).await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
}

/// The stack from `battlement.toml` (redirect on, `localhost` allowed) over a plain socket.
#[cfg(feature = "config")]
#[tokio::test]
async fn the_files_stack_redirects_absolute_form_https_targets() {
    use battlement::{Stack, stack::ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = ServerConfig::from_toml_str(include_str!("../battlement.toml")).unwrap();
    // What this machine lacks (secrets, Redis) is not what this test is about.
    cfg.signing = None;
    cfg.api_key = None;
    cfg.rate_limit.redis = None;
    cfg.redis = None;
    cfg.client.signing = None;
    let addr = serve::serve(Stack::from_config(&cfg).unwrap().wrap(app_router())).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET https://localhost/orders HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 301"), "{text}");
    assert!(
        text.contains("location: https://localhost/orders\r\n"),
        "{text}"
    );
    assert!(!text.contains("strict-transport-security"), "{text}");
}

fn app_router() -> Router {
    Router::new().route("/{*rest}", any(|| async { "app" }))
}

#[test]
fn layer_is_clone_send_sync() {
    fn assert_bounds<T: Clone + Send + Sync + 'static>(_: &T) {}
    assert_bounds(&example());
}
