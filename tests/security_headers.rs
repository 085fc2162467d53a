//! Integration tests of the security-headers layer on real axum routers.

use std::net::SocketAddr;

use axum::{
    Extension, Router,
    body::Body,
    extract::ConnectInfo,
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use battlement::{
    ConfigErrorKind,
    net::{Scheme, TrustedProxies},
    security_headers::{
        ContentSecurityPolicy, CrossOriginEmbedderPolicy, CspNonce, Hsts, PermissionsPolicy,
        SecurityHeaders, SecurityHeadersLayer, SetSecurityHeaders,
    },
};
use http::{HeaderMap, Request, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const HELMET_CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests";

fn app(layer: SecurityHeadersLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/own",
            get(|| async {
                (
                    [
                        ("x-frame-options", "DENY"),
                        ("content-security-policy", "default-src 'none'"),
                        ("x-powered-by", "Express"),
                        ("server", "hyper"),
                        ("cache-control", "max-age=60"),
                    ],
                    "own",
                )
            }),
        )
        .route(
            "/nonce",
            get(|nonce: Option<Extension<CspNonce>>| async move {
                match nonce {
                    Some(Extension(n)) => n.as_str().to_owned().into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .layer(layer)
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

/// A GET of `uri`; an `https://` one as the TLS listener would hand it on (with
/// `Scheme::Https`: the URI's scheme alone proves nothing).
async fn get_headers(app: &Router, uri: &str) -> HeaderMap {
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    if uri.starts_with("https://") {
        req.extensions_mut().insert(Scheme::Https);
    }
    let res = send(app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.headers().clone()
}

async fn body_string(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn web_defaults_are_helmet_8_exactly() {
    let app = app(SecurityHeadersLayer::web());
    let h = get_headers(&app, "https://example.com/").await;
    let expected = [
        ("content-security-policy", HELMET_CSP),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("origin-agent-cluster", "?1"),
        ("referrer-policy", "no-referrer"),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-dns-prefetch-control", "off"),
        ("x-download-options", "noopen"),
        ("x-frame-options", "SAMEORIGIN"),
        ("x-permitted-cross-domain-policies", "none"),
        ("x-xss-protection", "0"),
    ];
    for (name, value) in expected {
        let got: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(got, [value], "{name}");
    }
    assert!(!h.contains_key("cross-origin-embedder-policy"));
    assert!(!h.contains_key("permissions-policy"));
    // Default is the web preset.
    let h2 = get_headers(
        &self::app(SecurityHeadersLayer::default()),
        "https://example.com/",
    )
    .await;
    for (name, _) in expected {
        assert_eq!(h2[name], h[name]);
    }
}

#[tokio::test]
async fn fingerprint_headers_removed() {
    let app1 = app(SecurityHeadersLayer::web());
    let h = get_headers(&app1, "/own").await;
    assert!(!h.contains_key("x-powered-by"));
    assert_eq!(h["server"], "hyper");
    let app2 = app(SecurityHeaders::web().remove_server_header().layer());
    let h = get_headers(&app2, "/own").await;
    assert!(!h.contains_key("x-powered-by"));
    assert!(!h.contains_key("server"));
    let app3 = app(SecurityHeaders::web()
        .keep_response_header(battlement::security_headers::X_POWERED_BY)
        .layer());
    assert_eq!(get_headers(&app3, "/own").await["x-powered-by"], "Express");
}

#[tokio::test]
async fn handler_set_headers_are_kept() {
    let app = app(SecurityHeadersLayer::web());
    let h = get_headers(&app, "/own").await;
    assert_eq!(
        h.get_all("x-frame-options").iter().collect::<Vec<_>>(),
        ["DENY"]
    );
    assert_eq!(
        h.get_all("content-security-policy")
            .iter()
            .collect::<Vec<_>>(),
        ["default-src 'none'"]
    );
    // The rest is still added.
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn override_modes() {
    let all = app(SecurityHeaders::web().override_existing().layer());
    let h = get_headers(&all, "/own").await;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["content-security-policy"], HELMET_CSP);
    assert_eq!(h.get_all("x-frame-options").iter().count(), 1);

    let one = app(SecurityHeaders::web()
        .overriding(header::X_FRAME_OPTIONS)
        .layer());
    let h = get_headers(&one, "/own").await;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["content-security-policy"], "default-src 'none'");

    let all_but_csp = app(SecurityHeaders::web()
        .override_existing()
        .keep_existing(header::CONTENT_SECURITY_POLICY)
        .layer());
    let h = get_headers(&all_but_csp, "/own").await;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["content-security-policy"], "default-src 'none'");
}

#[tokio::test]
async fn api_preset() {
    let app = app(SecurityHeadersLayer::api());
    let h = get_headers(&app, "https://api.example.com/").await;
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none';frame-ancestors 'none'"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["cross-origin-resource-policy"], "same-origin");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert!(!h.contains_key("origin-agent-cluster"));
    assert!(!h.contains_key("x-xss-protection"));
    // A handler's own Cache-Control wins.
    assert_eq!(
        get_headers(&app, "/own").await["cache-control"],
        "max-age=60"
    );
}

fn from_peer(uri: &str, peer: &str, proto: &str) -> Request<Body> {
    let mut req = Request::get(uri)
        .header("x-forwarded-proto", proto)
        .body(Body::empty())
        .unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

#[tokio::test]
async fn hsts_only_over_https() {
    let lb = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let app = app(SecurityHeaders::web().trusted_proxies(lb).layer());
    let hsts = "strict-transport-security";

    assert!(!get_headers(&app, "/").await.contains_key(hsts));
    assert!(
        !get_headers(&app, "http://example.com/")
            .await
            .contains_key(hsts)
    );
    assert!(
        get_headers(&app, "https://example.com/")
            .await
            .contains_key(hsts)
    );

    // The TLS acceptor's marker.
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Scheme::Https);
    assert!(send(&app, req).await.headers().contains_key(hsts));
    // An absolute-form `https://` target on a plain connection is the client's claim: no HSTS,
    // from a stranger or from the trusted load balancer saying `http`; the plain listener's
    // own `Scheme::Http` is final.
    let req = Request::get("https://example.com/")
        .body(Body::empty())
        .unwrap();
    assert!(!send(&app, req).await.headers().contains_key(hsts));
    let res = send(
        &app,
        from_peer("https://example.com/", "10.1.2.3:5000", "http"),
    )
    .await;
    assert!(!res.headers().contains_key(hsts));
    let mut req = from_peer("https://example.com/", "10.1.2.3:5000", "https");
    req.extensions_mut().insert(Scheme::Http);
    assert!(!send(&app, req).await.headers().contains_key(hsts));

    // X-Forwarded-Proto from the trusted load balancer, and from anyone else.
    let res = send(&app, from_peer("/", "10.1.2.3:5000", "https")).await;
    assert_eq!(res.headers()[hsts], "max-age=31536000; includeSubDomains");
    let res = send(&app, from_peer("/", "203.0.113.9:5000", "https")).await;
    assert!(!res.headers().contains_key(hsts));
    let res = send(&app, from_peer("/", "10.1.2.3:5000", "http")).await;
    assert!(!res.headers().contains_key(hsts));
    // Forwarded (RFC 7239) too.
    let mut req = Request::get("/")
        .header("forwarded", "for=198.51.100.7;proto=https")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("10.0.0.1:1".parse::<SocketAddr>().unwrap()));
    assert!(send(&app, req).await.headers().contains_key(hsts));

    // Without trusted proxies the header is never believed.
    let plain = self::app(SecurityHeadersLayer::web());
    let res = send(&plain, from_peer("/", "10.1.2.3:5000", "https")).await;
    assert!(!res.headers().contains_key(hsts));

    // Forced, and configured.
    let always = self::app(
        SecurityHeaders::web()
            .hsts(Hsts::new().max_age(600).include_subdomains(false))
            .unwrap()
            .hsts_always()
            .layer(),
    );
    assert_eq!(get_headers(&always, "/").await[hsts], "max-age=600");
    let preload = self::app(
        SecurityHeaders::web()
            .hsts(Hsts::new().preload())
            .unwrap()
            .layer(),
    );
    assert_eq!(
        get_headers(&preload, "https://a.example/").await[hsts],
        "max-age=31536000; includeSubDomains; preload"
    );
    let none = self::app(
        SecurityHeaders::web()
            .without(header::STRICT_TRANSPORT_SECURITY)
            .layer(),
    );
    assert!(
        !get_headers(&none, "https://a.example/")
            .await
            .contains_key(hsts)
    );
}

/// Over a real loopback socket with axum's `ConnectInfo`: the peer is 127.0.0.1.
async fn over_socket(trusted: TrustedProxies) -> String {
    let app = app(SecurityHeaders::web().trusted_proxies(trusted).layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    server.abort();
    out.to_ascii_lowercase()
}

#[tokio::test]
async fn hsts_from_trusted_proxy_over_socket() {
    let res = over_socket(TrustedProxies::loopback()).await;
    assert!(res.starts_with("http/1.1 200"), "{res}");
    assert!(res.contains("strict-transport-security: max-age=31536000; includesubdomains"));
    let res = over_socket(TrustedProxies::new(["10.0.0.0/8"]).unwrap()).await;
    assert!(res.starts_with("http/1.1 200"), "{res}");
    assert!(!res.contains("strict-transport-security"));
    assert!(res.contains("x-content-type-options: nosniff"));
}

#[tokio::test]
async fn nonce_per_request() {
    let csp = ContentSecurityPolicy::web().with_nonce();
    let app = app(SecurityHeaders::web().content_security_policy(csp).layer());
    let mut seen = Vec::new();
    for _ in 0..50 {
        let res = send(&app, Request::get("/nonce").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let header = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let nonce = body_string(res).await;
        assert_eq!(nonce.len(), 24);
        assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 16);
        // The nonce serves scripts and styles; helmet's `style-src 'unsafe-inline'` goes.
        assert_eq!(
            header,
            HELMET_CSP
                .replace(
                    "script-src 'self'",
                    &format!("script-src 'self' 'nonce-{nonce}'")
                )
                .replace(
                    "style-src 'self' https: 'unsafe-inline'",
                    &format!("style-src 'self' https: 'nonce-{nonce}'")
                )
        );
        assert!(!header.contains("unsafe-inline"), "{header}");
        assert!(!seen.contains(&nonce), "nonce repeated");
        seen.push(nonce);
    }
    // Without a nonce policy, no extension.
    let plain = self::app(SecurityHeadersLayer::web());
    let res = send(&plain, Request::get("/nonce").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// `X-Frame-Options` agrees with the CSP's `frame-ancestors` in every preset and in a page's
/// set layered under the `api` stack (the example server's `/` page): never `DENY` next to
/// `frame-ancestors 'self'`.
#[tokio::test]
async fn framing_headers_agree_with_frame_ancestors() {
    let page = Router::new()
        .route("/", get(|| async { "page" }))
        .layer(
            SecurityHeaders::empty()
                .content_security_policy(ContentSecurityPolicy::web().with_nonce())
                .layer(),
        )
        .layer(SecurityHeadersLayer::api());
    let cases = [
        ("web", app(SecurityHeadersLayer::web())),
        ("api", app(SecurityHeadersLayer::api())),
        (
            "web with a nonce",
            app(SecurityHeaders::web()
                .content_security_policy(ContentSecurityPolicy::web().with_nonce())
                .layer()),
        ),
        (
            "api with the web CSP",
            app(SecurityHeaders::api()
                .content_security_policy(ContentSecurityPolicy::web())
                .layer()),
        ),
        ("a web page under the api stack", page),
    ];
    for (name, app) in cases {
        let h = get_headers(&app, "/").await;
        let csp = h["content-security-policy"].to_str().unwrap();
        let ancestors = csp
            .split(';')
            .find_map(|d| d.strip_prefix("frame-ancestors "))
            .unwrap_or_else(|| panic!("{name}: {csp}"));
        let xfo: Vec<_> = h.get_all("x-frame-options").iter().collect();
        let want = if ancestors == "'self'" {
            "SAMEORIGIN"
        } else {
            "DENY"
        };
        assert_eq!(xfo, [want], "{name}: {csp}");
    }
    // An explicit choice after the CSP wins; a removed header stays removed.
    let own = app(SecurityHeaders::web()
        .content_security_policy(ContentSecurityPolicy::web())
        .header(header::X_FRAME_OPTIONS, "DENY".parse().unwrap())
        .layer());
    assert_eq!(get_headers(&own, "/").await["x-frame-options"], "DENY");
    let removed = app(SecurityHeaders::web()
        .remove_header(header::X_FRAME_OPTIONS)
        .content_security_policy(ContentSecurityPolicy::api())
        .layer());
    assert!(
        !get_headers(&removed, "/")
            .await
            .contains_key("x-frame-options")
    );
}

#[tokio::test]
async fn nonce_in_report_only_and_enforced() {
    let enforced = ContentSecurityPolicy::api()
        .with_nonce_in(["script-src", "style-src"])
        .unwrap();
    let trial = ContentSecurityPolicy::empty()
        .directive("script-src", ["'strict-dynamic'"])
        .unwrap()
        .with_nonce()
        .report_to("csp")
        .unwrap()
        .report_only();
    let app = app(SecurityHeaders::web()
        .content_security_policy(enforced)
        .content_security_policy(trial)
        .reporting_endpoints([("csp", "https://reports.example/csp")])
        .unwrap()
        .layer());
    let res = send(&app, Request::get("/nonce").body(Body::empty()).unwrap()).await;
    let h = res.headers().clone();
    let nonce = body_string(res).await;
    assert_eq!(
        h["content-security-policy"],
        format!(
            "default-src 'none';frame-ancestors 'none';script-src 'nonce-{nonce}';style-src 'nonce-{nonce}'"
        )
        .as_str()
    );
    assert_eq!(
        h["content-security-policy-report-only"],
        format!("script-src 'strict-dynamic' 'nonce-{nonce}';report-to csp").as_str()
    );
    assert_eq!(
        h["reporting-endpoints"],
        r#"csp="https://reports.example/csp""#
    );
    // A handler's own CSP is kept even with nonces.
    let h = get_headers(&app, "/own").await;
    assert_eq!(h["content-security-policy"], "default-src 'none'");
}

#[test]
fn csp_builder_rejects_injection() {
    let cases: &[(&str, &str)] = &[
        ("script-src", "'self'; script-src *"),
        ("script-src", "'self', script-src *"),
        ("img-src", "https://a.example\r\nSet-Cookie: x=1"),
        ("img-src", "https://a.example\0"),
        ("default-src", "self"),
        ("style-src", "unsafe-inline"),
        ("script-src", "nonce-abc"),
    ];
    for (directive, value) in cases {
        let err = ContentSecurityPolicy::empty()
            .directive(directive, [value])
            .expect_err(value);
        assert_eq!(err.field(), format!("csp.{directive}"), "{value:?}");
        assert!(err.to_string().contains(directive));
    }
    let err = ContentSecurityPolicy::empty()
        .directive("script-src", ["'self'; script-src *"])
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Unsafe);
    let err = ContentSecurityPolicy::empty()
        .directive("script-source", ["'self'"])
        .unwrap_err();
    assert_eq!(err.field(), "csp.script-source");
    assert!(
        ContentSecurityPolicy::empty()
            .allow_unknown_directives()
            .directive("script-source", ["'self'"])
            .is_ok()
    );
}

#[tokio::test]
async fn permissions_policy_and_coep() {
    assert_eq!(
        PermissionsPolicy::new()
            .allow("camera", ["'self'"])
            .unwrap_err()
            .field(),
        "permissions_policy.camera"
    );
    assert!(
        PermissionsPolicy::new()
            .allow("geolocation", ["https://a.example/path"])
            .is_err()
    );
    assert!(PermissionsPolicy::new().deny("camera=(), x").is_err());
    let pp = PermissionsPolicy::new()
        .deny("camera")
        .unwrap()
        .allow("geolocation", ["self", "https://maps.example"])
        .unwrap();
    let app = app(SecurityHeaders::web()
        .permissions_policy(pp)
        .cross_origin_embedder_policy(CrossOriginEmbedderPolicy::RequireCorp)
        .layer());
    let h = get_headers(&app, "/").await;
    assert_eq!(
        h["permissions-policy"],
        r#"camera=(), geolocation=(self "https://maps.example")"#
    );
    assert_eq!(h["cross-origin-embedder-policy"], "require-corp");
}

#[tokio::test]
async fn custom_sets() {
    let set = SecurityHeaders::empty()
        .try_header("x-custom", "1")
        .unwrap()
        .header(header::X_FRAME_OPTIONS, "DENY".parse().unwrap())
        .header(header::X_FRAME_OPTIONS, "SAMEORIGIN".parse().unwrap());
    let app = app(set.layer());
    let h = get_headers(&app, "https://a.example/").await;
    assert_eq!(h["x-custom"], "1");
    assert_eq!(
        h.get_all("x-frame-options").iter().collect::<Vec<_>>(),
        ["SAMEORIGIN"]
    );
    assert!(!h.contains_key("content-security-policy"));
    assert!(!h.contains_key("strict-transport-security"));
    let web_without = self::app(
        SecurityHeaders::web()
            .without(header::CONTENT_SECURITY_POLICY)
            .layer(),
    );
    assert!(
        !get_headers(&web_without, "/")
            .await
            .contains_key("content-security-policy")
    );
}

#[tokio::test]
async fn removed_headers_are_neither_sent_nor_kept() {
    let set = SecurityHeaders::web()
        .content_security_policy(ContentSecurityPolicy::web().with_nonce())
        .remove_header(header::CONTENT_SECURITY_POLICY);
    assert!(!set.uses_nonce());
    let app = app(set.layer());
    for uri in ["/", "/own"] {
        let h = get_headers(&app, uri).await;
        assert!(!h.contains_key("content-security-policy"), "{uri}");
        assert_eq!(h["x-frame-options"].len(), if uri == "/" { 10 } else { 4 });
    }
}

#[tokio::test]
async fn rejections_of_inner_layers_get_headers() {
    // Headers are added to every response, whatever its status.
    let app = Router::new()
        .route("/", get(|| async { StatusCode::PAYLOAD_TOO_LARGE }))
        .layer(SecurityHeadersLayer::web());
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn layer_and_service_bounds() {
    fn assert_bounds<T: Clone + Send + Sync + 'static>() {}
    assert_bounds::<SecurityHeadersLayer>();
    assert_bounds::<SetSecurityHeaders<Router>>();
    assert_bounds::<SecurityHeaders>();
    assert_bounds::<CspNonce>();
    // Router::layer accepts it (this is the compile check).
    let _router: Router = Router::new()
        .route("/", get(|| async {}))
        .layer(SecurityHeadersLayer::api());
}

#[tokio::test]
async fn works_on_a_plain_service_fn() {
    let svc = tower::ServiceBuilder::new()
        .layer(SecurityHeadersLayer::web())
        .service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("x")))
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()["x-frame-options"], "SAMEORIGIN");
}
