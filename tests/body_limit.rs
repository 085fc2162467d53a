//! Integration tests of `body_limit` on real axum routers (and a real socket).

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use battlement::{
    body_limit::{BodyLimitLayer, PayloadTooLarge},
    problem::Problem,
};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A body of the given chunks; `declared` is an exact size hint it may lie about.
struct Chunks {
    frames: VecDeque<Bytes>,
    declared: Option<u64>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .frames
                .pop_front()
                .map(|b| Ok(Frame::data(b))),
        )
    }

    fn size_hint(&self) -> SizeHint {
        self.declared
            .map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

fn chunks(sizes: &[usize]) -> Chunks {
    Chunks {
        frames: sizes.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect(),
        declared: None,
    }
}

/// A streamed body with no length, as `Body::from_stream` makes it.
fn streamed(sizes: &[usize]) -> Body {
    Body::from_stream(Body::new(chunks(sizes)).into_data_stream())
}

fn post_req(uri: &str, body: Body) -> Request {
    Request::post(uri).body(body).unwrap()
}

fn with_length(uri: &str, len: usize) -> Request {
    Request::post(uri)
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from(vec![b'x'; len]))
        .unwrap()
}

async fn assert_413(res: axum::response::Response, limit: u64) {
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        res.extensions().get::<PayloadTooLarge>().unwrap().limit,
        limit
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 413);
    assert!(v["type"].as_str().unwrap().ends_with("#payload-too-large"));
}

async fn text(res: axum::response::Response) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn oversize_content_length_is_refused_before_the_handler_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/",
            post(move |_req: Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .layer(BodyLimitLayer::new(100));

    assert_413(
        app.clone().oneshot(with_length("/", 101)).await.unwrap(),
        100,
    )
    .await;
    // A declared length with no bytes behind it: still nothing is read or called.
    let req = Request::post("/")
        .header(header::CONTENT_LENGTH, "1000000000000")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.extensions()
            .get::<PayloadTooLarge>()
            .unwrap()
            .content_length,
        Some(1_000_000_000_000)
    );
    assert_413(res, 100).await;
    // No header but a body of known size (an exact size hint).
    let res = app
        .clone()
        .oneshot(post_req("/", Body::from(vec![0; 101])))
        .await
        .unwrap();
    assert_413(res, 100).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let res = app.clone().oneshot(with_length("/", 100)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn detail_names_the_limit() {
    let app = Router::new()
        .route("/", post(|| async { "ok" }))
        .layer(BodyLimitLayer::new(10));
    let res = app.oneshot(with_length("/", 11)).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(
        v["detail"],
        "The request body is larger than the 10 bytes this endpoint accepts."
    );
}

fn extractor_routes() -> Router {
    Router::new()
        .route(
            "/bytes",
            post(|b: Bytes| async move { b.len().to_string() }),
        )
        .route(
            "/string",
            post(|s: String| async move { s.len().to_string() }),
        )
        .route(
            "/json",
            post(|Json(v): Json<serde_json::Value>| async move { v.to_string() }),
        )
        .route(
            "/raw",
            post(|req: Request| async move {
                // Reads the raw stream and turns a body error into a 500 of its own.
                let mut body = req.into_body();
                let mut n = 0;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
                        Err(_) => {
                            return (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
                        }
                    }
                }
                n.to_string().into_response()
            }),
        )
}

#[tokio::test]
async fn oversize_streamed_body_is_413_whatever_the_extractor() {
    for disable_axum_limit in [false, true] {
        let mut app = extractor_routes();
        if disable_axum_limit {
            app = app.layer(DefaultBodyLimit::disable());
        }
        let app = app.layer(BodyLimitLayer::new(1000));
        for uri in ["/bytes", "/string", "/json", "/raw"] {
            let req = Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(streamed(&[400, 400, 400]))
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_413(res, 1000).await;
        }
    }
}

#[tokio::test]
async fn exactly_at_the_limit_passes() {
    let app = extractor_routes().layer(BodyLimitLayer::new(1000));
    for uri in ["/bytes", "/string", "/raw"] {
        let res = app
            .clone()
            .oneshot(post_req(uri, streamed(&[400, 400, 200])))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(text(res).await, "1000");
        let res = app.clone().oneshot(with_length(uri, 1000)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(text(res).await, "1000");
    }
}

#[tokio::test]
async fn a_lying_length_never_lets_extra_bytes_through() {
    let app = extractor_routes().layer(BodyLimitLayer::new(1000));
    // Declares 10 bytes (Content-Length and size hint), sends 500.
    let liar = || Chunks {
        frames: [Bytes::from(vec![b'x'; 6]), Bytes::from(vec![b'x'; 494])].into(),
        declared: Some(10),
    };
    let req = Request::post("/raw")
        .header(header::CONTENT_LENGTH, "10")
        .body(Body::new(liar()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    // The handler saw the first 6 bytes, then an error: never the rest.
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(res).await, "broken");

    // Also through a plain tower service, without axum in between.
    let svc = tower::ServiceBuilder::new()
        .layer(BodyLimitLayer::new(1000))
        .service_fn(
            |req: http::Request<battlement::body_limit::RequestBody<Chunks>>| async move {
                let mut body = req.into_body();
                let mut seen = 0;
                let mut failed = false;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => seen += f.data_ref().map_or(0, |d: &Bytes| d.len()),
                        Err(_) => failed = true,
                    }
                }
                Ok::<_, Infallible>(http::Response::new(Body::from(format!("{seen} {failed}"))))
            },
        );
    let res = svc.oneshot(http::Request::new(liar())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "6 true");
}

#[tokio::test]
async fn per_route_limits_override_the_global_one_both_ways() {
    let len = |b: Bytes| async move { b.len().to_string() };
    let app = Router::new()
        .route("/big", post(len).layer(BodyLimitLayer::new(5000)))
        .route("/small", post(len).layer(BodyLimitLayer::new(10)))
        .route("/default", post(len))
        .layer(BodyLimitLayer::new(1000).max_route_limit(10_000));

    // Raised: by Content-Length and streamed.
    let res = app
        .clone()
        .oneshot(with_length("/big", 4000))
        .await
        .unwrap();
    assert_eq!(text(res).await, "4000");
    let res = app
        .clone()
        .oneshot(post_req("/big", streamed(&[2000, 2000])))
        .await
        .unwrap();
    assert_eq!(text(res).await, "4000");
    assert_413(
        app.clone()
            .oneshot(with_length("/big", 5001))
            .await
            .unwrap(),
        5000,
    )
    .await;
    let res = app
        .clone()
        .oneshot(post_req("/big", streamed(&[3000, 3000])))
        .await
        .unwrap();
    assert_413(res, 5000).await;

    // Lowered.
    assert_413(
        app.clone()
            .oneshot(with_length("/small", 11))
            .await
            .unwrap(),
        10,
    )
    .await;
    let res = app
        .clone()
        .oneshot(post_req("/small", streamed(&[6, 6])))
        .await
        .unwrap();
    assert_413(res, 10).await;
    let res = app
        .clone()
        .oneshot(with_length("/small", 10))
        .await
        .unwrap();
    assert_eq!(text(res).await, "10");

    // The global limit elsewhere, by Content-Length between the limit and the ceiling too.
    assert_413(
        app.clone()
            .oneshot(with_length("/default", 1001))
            .await
            .unwrap(),
        1000,
    )
    .await;
    let res = app
        .clone()
        .oneshot(post_req("/default", streamed(&[600, 600])))
        .await
        .unwrap();
    assert_413(res, 1000).await;
    // Past the ceiling: refused by the global layer before anything runs.
    assert_413(
        app.clone()
            .oneshot(with_length("/big", 10_001))
            .await
            .unwrap(),
        1000,
    )
    .await;
}

#[tokio::test]
async fn without_a_ceiling_an_inner_layer_only_lowers() {
    let len = |b: Bytes| async move { b.len().to_string() };
    let app = Router::new()
        .route("/big", post(len).layer(BodyLimitLayer::new(5000)))
        .route("/small", post(len).layer(BodyLimitLayer::new(10)))
        .layer(BodyLimitLayer::new(1000));
    let res = app
        .clone()
        .oneshot(post_req("/small", streamed(&[6, 6])))
        .await
        .unwrap();
    assert_413(res, 10).await;
    assert_413(
        app.clone()
            .oneshot(with_length("/small", 11))
            .await
            .unwrap(),
        10,
    )
    .await;
    assert_413(
        app.clone()
            .oneshot(with_length("/big", 2000))
            .await
            .unwrap(),
        1000,
    )
    .await;
    let res = app
        .clone()
        .oneshot(post_req("/big", streamed(&[600, 600])))
        .await
        .unwrap();
    assert_413(res, 1000).await;
}

#[tokio::test]
async fn route_layer_and_router_layer_compile_and_serve() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(BodyLimitLayer::new(10))
        .layer(BodyLimitLayer::default());
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    fn assert_bounds<T: Clone + Send + Sync + 'static>(_: &T) {}
    assert_bounds(&BodyLimitLayer::default());
}

#[tokio::test]
async fn the_rejection_can_be_replaced() {
    let app = Router::new()
        .route("/", post(|b: Bytes| async move { b.len().to_string() }))
        .layer(BodyLimitLayer::new(10).with_rejection(|p: Problem| {
            let mut res = axum::response::Response::new(Body::from("too big"));
            *res.status_mut() = p.status();
            res
        }));
    let res = app
        .clone()
        .oneshot(post_req("/", streamed(&[8, 8])))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.extensions().get::<PayloadTooLarge>().is_some());
    assert_eq!(text(res).await, "too big");
}

#[tokio::test]
async fn a_handler_that_answered_before_the_limit_stands() {
    // Reads 5 bytes and answers: the body did not cross the limit while it ran.
    let app = Router::new()
        .route(
            "/",
            post(|req: Request| async move {
                let mut body = req.into_body();
                let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
                first.len().to_string()
            }),
        )
        .layer(BodyLimitLayer::new(10));
    let res = app
        .oneshot(post_req("/", streamed(&[5, 100])))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "5");
}

#[tokio::test]
async fn over_a_real_socket_a_chunked_upload_gets_413() {
    let app = Router::new()
        .route(
            "/upload",
            post(|b: Bytes| async move { b.len().to_string() }),
        )
        .layer(BodyLimitLayer::new(64 * 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let send = |body: Body, uri: &'static str| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(uri)
            .header(header::HOST, "localhost")
            .body(body)
            .unwrap();
        sender.send_request(req).await.unwrap()
    };

    // 16 chunks of 8 KiB, no Content-Length: hyper sends it chunked.
    let res = send(streamed(&[8 * 1024; 16]), "/upload").await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    // Within the limit: served.
    let res = send(streamed(&[8 * 1024; 4]), "/upload").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "32768");
    server.abort();
}
