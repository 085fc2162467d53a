//! The client stack built from `battlement.toml`'s `[client]` section talks to the server stack
//! built from the same file, over a real loopback socket, with every method; and the attacks on
//! the bodiless-request rule (a body added to a request signed without one, a body stripped
//! from a signed one, `Content-Length: 0` next to a chunked body) are refused.
#![cfg(feature = "config")]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::Request as AxumRequest, routing::any};
use battlement::{
    Stack,
    config::SecretSource,
    signing::{BufferedBody, Key, KeyRing, SignRequestLayer},
    stack::{ClientStack, ServerConfig},
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{BoxError, Layer, ServiceExt, service_fn};

const EXAMPLE: &str = include_str!("../battlement.toml");
/// The development secret of `partner-2026` on both sides (the file reads it from the
/// environment, which tests do not set).
const SECRET_HEX: &str = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c";
/// A key of the file's `billing` principal (its hash is the first one listed).
const API_KEY: &str = "password";

fn inline(hex: &str) -> SecretSource {
    SecretSource::Inline(zeroize::Zeroizing::new(hex.to_owned()))
}

/// The shipped file, with what this machine lacks supplied as the example server does: the
/// signing secrets inline, no Redis (limits in memory).
fn config() -> ServerConfig {
    let mut cfg = ServerConfig::from_toml_str(EXAMPLE).unwrap();
    let signing = cfg.signing.as_mut().unwrap();
    let old = "cd".repeat(32);
    for (i, key) in signing.keys.iter_mut().enumerate() {
        key.secret = inline(if i == 0 { SECRET_HEX } else { &old });
    }
    cfg.rate_limit.redis = None;
    cfg.redis = None;
    cfg.client.signing.as_mut().unwrap().secret = inline(SECRET_HEX);
    cfg
}

/// What the application saw: method and body.
type Seen = Arc<Mutex<Vec<(Method, Bytes)>>>;

/// The server stack from the file around a router that records every request it gets, served
/// on `[::1]`: the file trusts `::1/128` as its TLS proxy, so the tests can say
/// `X-Forwarded-Proto: https` as that proxy would.
async fn server() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/orders",
        any(move |req: AxumRequest| {
            let log = log.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                log.lock().unwrap().push((parts.method, bytes));
                "ok"
            }
        }),
    );
    let app = Stack::from_config(&config()).unwrap().wrap(app);
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, seen)
}

/// The HTTP client under the client stack: one HTTP/1.1 connection per request to `addr`, the
/// request-target in origin-form and `Host` from the URI (as hyper-util's client does), plus
/// what the TLS proxy in front of the server adds.
async fn send_http1(
    addr: SocketAddr,
    req: Request<BufferedBody>,
) -> Result<Response<Bytes>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().unwrap().as_str().to_owned();
    parts
        .headers
        .insert(http::header::HOST, HeaderValue::from_str(&authority)?);
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    parts
        .headers
        .insert("x-api-key", HeaderValue::from_static(API_KEY));
    parts.uri = Uri::try_from(parts.uri.path_and_query().unwrap().as_str())?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(
        parts,
        body.collect().await?.to_bytes(),
    ))
}

fn url(addr: SocketAddr) -> String {
    format!("https://{addr}/orders")
}

#[tokio::test]
async fn the_files_client_talks_to_the_files_server_with_every_method() {
    let (addr, seen) = server().await;
    let cfg = config();
    let client = ClientStack::signed_from_config(&cfg.client)
        .unwrap()
        .layer(service_fn(move |req| send_http1(addr, req)));
    let cases: [(Method, &'static str); 9] = [
        (Method::GET, ""),
        (Method::HEAD, ""),
        (Method::POST, "{\"qty\": 3}"),
        (Method::POST, ""),
        (Method::PUT, "{\"qty\": 4}"),
        (Method::PATCH, "{\"qty\": 5}"),
        (Method::DELETE, ""),
        (Method::DELETE, "{\"why\": 1}"),
        (Method::OPTIONS, ""),
    ];
    for (method, body) in &cases {
        let req = Request::builder()
            .method(method.clone())
            .uri(url(addr))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{method} {body:?}: {:?}",
            res.body()
        );
    }
    // Every one but OPTIONS reached the application with its body: tower-http's CORS layer,
    // outside authentication (DESIGN.md §3), answers every OPTIONS as a preflight.
    let seen = seen.lock().unwrap().clone();
    let want: Vec<_> = cases
        .iter()
        .filter(|(m, _)| m != Method::OPTIONS)
        .map(|(m, b)| (m.clone(), Bytes::from_static(b.as_bytes())))
        .collect();
    assert_eq!(seen, want);
}

/// A request signed by the crate's signer with the file's client key, as it would go out.
async fn signed(method: Method, uri: &str, body: &'static str) -> Request<BufferedBody> {
    let key = Key::hmac_sha256("partner-2026", &hex(SECRET_HEX)).unwrap();
    let captured = Arc::new(Mutex::new(None));
    let out = captured.clone();
    let signer = SignRequestLayer::new(KeyRing::new(key)).layer(service_fn(
        move |req: Request<BufferedBody>| {
            *out.lock().unwrap() = Some(req);
            async { Ok::<_, BoxError>(()) }
        },
    ));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    signer.oneshot(req).await.unwrap();
    captured.lock().unwrap().take().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends `req`'s method, path and headers as written by hand, then `extra` header lines and
/// `body` as given (the attacker's edits); the status and the response text.
async fn raw(addr: SocketAddr, req: &Request<BufferedBody>, extra: &str, body: &[u8]) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nx-forwarded-proto: https\r\nx-api-key: {API_KEY}\r\nconnection: close\r\n",
        req.method(),
        req.uri().path()
    );
    for (name, value) in req.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str(extra);
    head.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf));
    read.await.unwrap().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(text: &str) -> &str {
    text.get(9..12).unwrap_or(text)
}

#[tokio::test]
async fn bodiless_signatures_do_not_carry_a_body() {
    let (addr, seen) = server().await;
    let uri = url(addr);

    // The control: as signed, a bodiless GET passes.
    let get = signed(Method::GET, &uri, "").await;
    assert!(!get.headers().contains_key("content-digest"));
    let ok = raw(addr, &get, "", b"").await;
    assert_eq!(status(&ok), "200", "{ok}");

    // A body added to a GET signed without one: refused (the signature covers no digest).
    let get = signed(Method::GET, &uri, "").await;
    let text = raw(addr, &get, "content-length: 5\r\n", b"hello").await;
    assert_eq!(status(&text), "401", "{text}");

    // The same, chunked.
    let get = signed(Method::GET, &uri, "").await;
    let text = raw(
        addr,
        &get,
        "transfer-encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&text), "401", "{text}");

    // `Content-Length: 0` next to a chunked body: never read as bodiless.
    let post = signed(Method::POST, &uri, "").await;
    assert!(!post.headers().contains_key("content-digest"));
    let text = raw(
        addr,
        &post,
        "content-length: 0\r\ntransfer-encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    // (hyper reads the chunked body, RFC 9112 §6.3: the verifier then sees content.)
    assert_eq!(status(&text), "401", "{text}");

    // A POST signed with its body, the body stripped: the covered digest no longer matches.
    let post = signed(Method::POST, &uri, "{\"qty\": 3}").await;
    assert!(post.headers().contains_key("content-digest"));
    let text = raw(addr, &post, "content-length: 0\r\n", b"").await;
    assert_eq!(status(&text), "401", "{text}");
    let text = raw(addr, &post, "", b"").await;
    assert_eq!(status(&text), "401", "{text}");

    // The same POST with its body but without its `Content-Digest`: refused.
    let mut post = signed(Method::POST, &uri, "{\"qty\": 3}").await;
    post.headers_mut().remove("content-digest");
    let text = raw(addr, &post, "content-length: 10\r\n", b"{\"qty\": 3}").await;
    assert_eq!(status(&text), "401", "{text}");

    // HTTP/2 (prior knowledge, as the file's TLS proxy would forward it): a body added to a
    // GET signed without one, in DATA frames with no `content-length`: refused.
    let get = signed(Method::GET, &uri, "").await;
    let (mut parts, _) = get.into_parts();
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    parts
        .headers
        .insert("x-api-key", HeaderValue::from_static(API_KEY));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let h2 = |parts: http::request::Parts, body: &'static str| {
        let mut sender = sender.clone();
        async move {
            let req = Request::from_parts(parts, Full::new(Bytes::from_static(body.as_bytes())));
            sender.send_request(req).await.unwrap().status()
        }
    };
    assert_eq!(h2(parts.clone(), "hello").await, StatusCode::UNAUTHORIZED);
    // The same signature as signed (a fresh nonce: the refused one was never recorded).
    let get = signed(Method::GET, &uri, "").await;
    let (mut ok, _) = get.into_parts();
    ok.headers
        .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    ok.headers
        .insert("x-api-key", HeaderValue::from_static(API_KEY));
    assert_eq!(h2(ok, "").await, StatusCode::OK);

    // Only the controls reached the application.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(Method::GET, Bytes::new()), (Method::GET, Bytes::new())]
    );
}

/// A signer told to cover `content-digest` covers it on a bodiless request too (the digest of
/// the empty body), and the verifier checks it against the (empty) body.
#[tokio::test]
async fn a_listed_content_digest_is_sent_and_checked_without_a_body() {
    use battlement::signing::{VerifyPolicy, VerifySignatureLayer};
    let key = || Key::hmac_sha256("partner-2026", &hex(SECRET_HEX)).unwrap();
    let captured = Arc::new(Mutex::new(None));
    let out = captured.clone();
    let signer = SignRequestLayer::new(KeyRing::new(key()))
        .with_components(["@method", "@authority", "@target-uri", "content-digest"])
        .unwrap()
        .layer(service_fn(move |req: Request<BufferedBody>| {
            *out.lock().unwrap() = Some(req);
            async { Ok::<_, BoxError>(()) }
        }));
    let get = Request::get("http://api.example.com/orders")
        .body(Full::new(Bytes::new()))
        .unwrap();
    signer.oneshot(get).await.unwrap();
    let signed = captured.lock().unwrap().take().unwrap();
    // RFC 9530: the SHA-256 of nothing.
    assert_eq!(
        signed.headers()["content-digest"],
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
    let policy = VerifyPolicy::new()
        .required_components(["@method", "@authority", "@target-uri", "content-digest"])
        .unwrap();
    // A fresh verifier (and replay store) per request, so the nonce is new to each.
    let app = || {
        VerifySignatureLayer::with_policy(KeyRing::new(key()), policy.clone()).layer(service_fn(
            |_req: Request<BufferedBody>| async {
                Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::empty()))
            },
        ))
    };
    let (parts, body) = signed.into_parts();
    let res = app()
        .oneshot(Request::from_parts(parts.clone(), body))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The same signature with a body added: the covered digest is checked, and fails.
    let res = app()
        .oneshot(Request::from_parts(
            parts,
            Full::new(Bytes::from_static(b"hello")),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let kind = res
        .extensions()
        .get::<battlement::signing::SignatureError>()
        .map(|e| e.kind());
    assert_eq!(
        kind,
        Some(battlement::signing::SignatureErrorKind::DigestMismatch)
    );
}
