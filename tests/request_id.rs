//! `request_id` on real axum routers (and a real hyper-util client over loopback).

use std::{collections::HashSet, convert::Infallible, net::SocketAddr};

use axum::{
    Extension, Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderValue, Request, Response, StatusCode},
    routing::get,
};
use battlement::{
    net::{PeerAddr, TrustedProxies},
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType},
    request_id::{DefaultValidateRequestId, ForwardRequestIdLayer, RequestId, SetRequestIdLayer},
};
use http_body_util::BodyExt;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

const UUID: &str = "0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// What the handler saw: the extension, `RequestId::current()` and the request header.
async fn echo(Extension(id): Extension<RequestId>, headers: HeaderMap) -> String {
    let current = RequestId::current()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let header = headers
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    format!("{id}|{current}|{header}")
}

fn app(layer: SetRequestIdLayer) -> Router {
    Router::new().route("/", get(echo)).layer(layer)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let header = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    let ext = res.extensions().get::<RequestId>().cloned().unwrap();
    assert_eq!(ext.as_str(), header, "response extension = header");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, header, String::from_utf8(body.to_vec()).unwrap())
}

/// Sends a request with the given `x-request-id` bytes and returns the final id, checking that
/// the handler saw the same id everywhere.
async fn final_id(app: &Router, incoming: Option<&[u8]>) -> String {
    let mut req = Request::builder().uri("/");
    if let Some(v) = incoming {
        req = req.header("x-request-id", HeaderValue::from_bytes(v).unwrap());
    }
    let (status, header, body) = send(app, req.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("{header}|{header}|{header}"));
    header
}

fn assert_uuid_v7(id: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 7, "{id}");
    assert_eq!(id, uuid.hyphenated().to_string(), "lowercase hyphenated");
}

#[tokio::test]
async fn generated_ids_are_unique_uuid_v7() {
    let app = app(SetRequestIdLayer::new());
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let id = final_id(&app, None).await;
        assert_uuid_v7(&id);
        assert!(seen.insert(id), "duplicate id");
    }
}

#[tokio::test]
async fn valid_incoming_ids_are_kept() {
    let app = app(SetRequestIdLayer::new());
    let max = "a".repeat(128);
    for ok in [UUID, "x", "lb.5f2a_77:9-Z", max.as_str()] {
        assert_eq!(final_id(&app, Some(ok.as_bytes())).await, ok);
    }
}

#[tokio::test]
async fn bad_incoming_ids_are_replaced() {
    let app = app(SetRequestIdLayer::new());
    let long = "a".repeat(129);
    let cases: Vec<&[u8]> = vec![
        long.as_bytes(),
        b"",
        b"a b",
        b"a/b",
        b"a\"b",
        b"{\"x\":1}",
        b"a\x80b",
        b"\xff\xfe",
        "caf\u{e9}".as_bytes(),
        "\u{202e}abc".as_bytes(),
        b"a\tb",
        b"id=1; admin",
    ];
    for bad in cases {
        let id = final_id(&app, Some(bad)).await;
        assert_uuid_v7(&id);
    }
}

#[tokio::test]
async fn several_incoming_headers_are_replaced() {
    let app = app(SetRequestIdLayer::new());
    let req = Request::builder()
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(Body::empty())
        .unwrap();
    let (_, header, body) = send(&app, req).await;
    assert_uuid_v7(&header);
    assert_eq!(body, format!("{header}|{header}|{header}"));
}

#[tokio::test]
async fn trusted_proxies_only() {
    let layer =
        SetRequestIdLayer::new().trust_incoming_from(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let app = app(layer);
    let with_peer = |peer: Option<&str>, axum_style: bool| {
        let mut req = Request::builder()
            .header("x-request-id", "from-proxy")
            .header("traceparent", TRACEPARENT)
            .body(Body::empty())
            .unwrap();
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().unwrap();
            if axum_style {
                req.extensions_mut().insert(ConnectInfo(addr));
            } else {
                req.extensions_mut().insert(PeerAddr(addr));
            }
        }
        req
    };
    let (_, id, _) = send(&app, with_peer(Some("10.1.2.3:5000"), true)).await;
    assert_eq!(id, "from-proxy");
    let (_, id, _) = send(&app, with_peer(Some("10.1.2.3:5000"), false)).await;
    assert_eq!(id, "from-proxy");
    // Neither the header nor traceparent from anyone else, nor from an unknown peer.
    let (_, id, body) = send(&app, with_peer(Some("203.0.113.9:5000"), true)).await;
    assert_uuid_v7(&id);
    assert_eq!(body, format!("{id}|{id}|{id}"));
    let (_, id, _) = send(&app, with_peer(None, true)).await;
    assert_uuid_v7(&id);
}

#[tokio::test]
async fn ignore_incoming() {
    let app = app(SetRequestIdLayer::new().ignore_incoming());
    assert_uuid_v7(&final_id(&app, Some(b"client-chosen")).await);
}

async fn with_traceparent(app: &Router, tp: &[&str], id: Option<&str>) -> String {
    let mut req = Request::builder().uri("/");
    for tp in tp {
        req = req.header("traceparent", *tp);
    }
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let (_, header, _) = send(app, req.body(Body::empty()).unwrap()).await;
    header
}

#[tokio::test]
async fn traceparent() {
    let app = app(SetRequestIdLayer::new().use_traceparent(true));
    assert_eq!(with_traceparent(&app, &[TRACEPARENT], None).await, TRACE_ID);
    // A valid id header wins; an invalid one falls back to traceparent.
    assert_eq!(
        with_traceparent(&app, &[TRACEPARENT], Some("mine")).await,
        "mine"
    );
    assert_eq!(
        with_traceparent(&app, &[TRACEPARENT], Some("a b")).await,
        TRACE_ID
    );
    let invalid = [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
    ];
    for tp in invalid {
        assert_uuid_v7(&with_traceparent(&app, &[tp], None).await);
    }
    // Two traceparent headers: ambiguous.
    assert_uuid_v7(&with_traceparent(&app, &[TRACEPARENT, TRACEPARENT], None).await);
    // Off by default.
    let app = self::app(SetRequestIdLayer::new());
    assert_uuid_v7(&with_traceparent(&app, &[TRACEPARENT], None).await);
}

#[tokio::test]
async fn response_header_is_overwritten() {
    let app = Router::new()
        .route(
            "/",
            get(|| async { ([("x-request-id", "set-by-handler")], "ok") }),
        )
        .layer(SetRequestIdLayer::new());
    let req = Request::builder()
        .header("x-request-id", "mine")
        .body(Body::empty())
        .unwrap();
    let (_, header, _) = send(&app, req).await;
    assert_eq!(header, "mine");
}

#[tokio::test]
async fn rejection_from_an_inner_layer_carries_the_id() {
    // An inner service of this crate's kind: answers with a problem built from the extensions.
    let inner = service_fn(|req: Request<Body>| async move {
        let problem =
            Problem::new(ProblemType::TOO_MANY_REQUESTS).with_request_id_from(req.extensions());
        Ok::<Response<Body>, Infallible>(DefaultRejection.make_rejection(problem))
    });
    let svc = SetRequestIdLayer::new().layer(inner);
    let res = svc.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_uuid_v7(&header);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["request_id"], header.as_str());
}

#[tokio::test]
async fn custom_header_generator_and_validator() {
    let layer = SetRequestIdLayer::new()
        .header(http::HeaderName::from_static("x-correlation-id"))
        .with_make_request_id(|| "generated-1".parse::<RequestId>().unwrap())
        .with_validate_request_id(|id: &str| id.starts_with("edge-"));
    let app = Router::new()
        .route(
            "/",
            get(|Extension(id): Extension<RequestId>| async move { id.to_string() }),
        )
        .layer(layer);
    for (incoming, expected) in [("edge-1", "edge-1"), ("other", "generated-1")] {
        let req = Request::builder()
            .header("x-correlation-id", incoming)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-correlation-id"], expected);
        assert!(res.headers().get("x-request-id").is_none());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected);
    }
    // The configurable default rule.
    let v = DefaultValidateRequestId::new()
        .with_length(8, 8)
        .unwrap()
        .with_charset("0123456789abcdef")
        .unwrap();
    let app = Router::new()
        .route("/", get(echo))
        .layer(SetRequestIdLayer::new().with_validate_request_id(v));
    assert_eq!(final_id(&app, Some(b"deadbeef")).await, "deadbeef");
    assert_uuid_v7(&final_id(&app, Some(b"deadbeef0")).await);
    assert_uuid_v7(&final_id(&app, Some(b"DEADBEEF")).await);
}

#[test]
fn layers_fit_router_layer() {
    fn assert_bounds<T: Clone + Send + Sync + 'static>(_: &T) {}
    let layer = SetRequestIdLayer::new()
        .use_traceparent(true)
        .with_make_request_id(|| "x".parse::<RequestId>().unwrap())
        .with_validate_request_id(|id: &str| !id.is_empty());
    assert_bounds(&layer);
    assert_bounds(&layer.layer(service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    })));
    assert_bounds(&ForwardRequestIdLayer::new());
    let _: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
        .layer(SetRequestIdLayer::new());
}

// Client side.

/// A backend that answers with the `x-request-id` it received (or `-`).
async fn backend() -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            headers
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| "-".to_owned())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn call<S>(client: S, req: Request<Body>) -> String
where
    S: tower::Service<
            Request<Body>,
            Response = Response<hyper::body::Incoming>,
            Error = hyper_util::client::legacy::Error,
        >,
{
    let res = client.oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn client_forwards_the_current_id() {
    let backend = backend().await;
    let uri = format!("http://{backend}/");

    // A front server whose handler calls the backend: the backend sees the front's id.
    let front = Router::new()
        .route(
            "/",
            get({
                let uri = uri.clone();
                move || async move {
                    let client = ServiceBuilder::new()
                        .layer(ForwardRequestIdLayer::new())
                        .service(client());
                    let req = Request::get(&uri).body(Body::empty()).unwrap();
                    call(client, req).await
                }
            }),
        )
        .layer(SetRequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, front).await.unwrap() });

    for incoming in [None, Some("chain-77")] {
        let mut req = Request::get(format!("http://{front_addr}/"));
        if let Some(id) = incoming {
            req = req.header("x-request-id", id);
        }
        let res = client()
            .request(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let front_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, front_id.as_bytes(), "backend saw the front's id");
        if let Some(id) = incoming {
            assert_eq!(front_id, id);
        } else {
            assert_uuid_v7(&front_id);
        }
    }

    let forwarding = || ForwardRequestIdLayer::new().layer(client());
    // Outside any request: nothing is added.
    let req = Request::get(&uri).body(Body::empty()).unwrap();
    assert_eq!(call(forwarding(), req).await, "-");
    // From the outgoing request's own extensions, ahead of the current id.
    let current: RequestId = "current".parse().unwrap();
    let mut req = Request::get(&uri).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert("explicit".parse::<RequestId>().unwrap());
    let seen = current.clone().scope(call(forwarding(), req)).await;
    assert_eq!(seen, "explicit");
    // A header already there is left alone.
    let req = Request::get(&uri)
        .header("x-request-id", "preset")
        .body(Body::empty())
        .unwrap();
    assert_eq!(current.scope(call(forwarding(), req)).await, "preset");
}
