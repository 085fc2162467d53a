//! Integration tests of `battlement::rate_limit` on real axum routers.

#[path = "support/serve.rs"]
mod serve;

#[path = "support/slow_store.rs"]
mod slow_store;
use slow_store::SlowStore;

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    net::TrustedProxies,
    rate_limit::{
        ClientIp, ExtensionKey, GlobalKey, HeaderKey, HeaderStyle, Limit, ManualClock, MemoryStore,
        PeerIp, Quota, RateLimitLayer, RateLimitReason, RateLimited, TokioClock,
    },
};
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero"),
    }
}

/// 100 per minute with a burst of 10.
const Q100: Quota = Quota::per_minute(nz(100)).with_burst(nz(10));

fn hello() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn req_from(peer: &str) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut()
        .insert(HeaderName::from_static(name), value.parse().unwrap());
    req
}

async fn status(app: &Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn router_layer_compiles_and_serves() {
    let app = hello().layer(RateLimitLayer::new(Limit::new(PeerIp::new(), Q100)));
    let res = app.oneshot(req_from("192.0.2.1:1000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"per-minute\";q=100;w=60"
    );
    assert_eq!(res.headers()["ratelimit"], "\"per-minute\";r=9;t=1");
}

/// At 100 per minute with a burst of 10, hammering every 100 ms for ten simulated minutes admits
/// exactly the theoretical count: the burst, then one every 600 ms.
#[tokio::test(start_paused = true)]
async fn accuracy_request_counts_over_ten_minutes() {
    let app = hello()
        .layer(RateLimitLayer::new(Limit::new(PeerIp::new(), Q100)).with_clock(TokioClock::new()));
    let step = Duration::from_millis(100);
    let (mut admitted, mut elapsed) = (0u64, Duration::ZERO);
    while elapsed < Duration::from_secs(600) {
        if status(&app, req_from("198.51.100.3:1")).await == StatusCode::OK {
            admitted += 1;
        }
        tokio::time::advance(step).await;
        elapsed += step;
    }
    // Requests at 0, 0.1, ..., 599.9 s: 10 at once, then one per 600 ms after 0.
    let last = 599_900u64; // ms
    assert_eq!(admitted, 10 + last / 600);
    assert_eq!(admitted, 1009);
}

/// Weighted: 100 tokens per minute, burst 10, requests costing 1 to 4 tokens. The admitted token
/// total equals what an exact token bucket admits, and stays within burst + rate × time.
#[tokio::test(start_paused = true)]
async fn accuracy_weighted_costs_over_ten_minutes() {
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(PeerIp::new(), Q100))
            .with_clock(TokioClock::new())
            .with_cost(|req| {
                req.headers
                    .get("x-cost")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1)
            }),
    );
    // Reference: an exact token bucket, in nanoseconds of refill (600 ms per token).
    let emission: u64 = 600_000_000;
    let capacity = 10 * emission;
    let (mut level, mut last) = (capacity, 0u64);
    let (mut expected, mut admitted, mut tokens) = (0u64, 0u64, 0u64);
    let step = Duration::from_millis(100);
    for i in 0..6000u64 {
        let now = i * 100_000_000;
        let cost = 1 + i % 4;
        level = (level + (now - last)).min(capacity);
        last = now;
        if cost * emission <= level {
            level -= cost * emission;
            expected += 1;
        }
        let req = with_header(req_from("198.51.100.4:1"), "x-cost", &cost.to_string());
        if status(&app, req).await == StatusCode::OK {
            admitted += 1;
            tokens += cost;
        }
        tokio::time::advance(step).await;
    }
    assert_eq!(admitted, expected);
    assert!(tokens <= 10 + 599_900 / 600, "{tokens}");
    // The bucket was never idle long enough to lose more than one request's worth.
    assert!(tokens + 4 >= 10 + 599_900 / 600, "{tokens}");
}

/// Many tasks on a multi-thread runtime, one service clone per request, one key: exactly the
/// quota is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_admits_exactly_the_quota() {
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(
            PeerIp::new(),
            Quota::per_hour(nz(50)).with_burst(nz(50)),
        ))
        .with_clock(ManualClock::new()),
    );
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let (app, ok, limited) = (app.clone(), ok.clone(), limited.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let req = req_from(&format!("203.0.113.77:{}", 1000 + t));
                match app.clone().oneshot(req).await.unwrap().status() {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::Relaxed),
                    other => panic!("{other}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 50);
    assert_eq!(limited.load(Ordering::Relaxed), 640 - 50);
}

#[tokio::test]
async fn forwarded_for_from_untrusted_peer_is_ignored() {
    let limit = Limit::new(
        ClientIp::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap()),
        Quota::per_minute(nz(2)),
    );
    let app = hello().layer(RateLimitLayer::new(limit));
    // A client rotating spoofed X-Forwarded-For values shares its own bucket.
    for (i, expected) in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .enumerate()
    {
        let req = with_header(
            req_from("203.0.113.9:1"),
            "x-forwarded-for",
            &format!("1.1.1.{i}"),
        );
        assert_eq!(status(&app, req).await, expected);
    }
    // Behind the trusted proxy, each forwarded client has its own bucket.
    for i in 0..5 {
        let req = with_header(
            req_from("10.0.0.1:1"),
            "x-forwarded-for",
            &format!("6.6.6.6, 198.51.100.{i}"),
        );
        assert_eq!(status(&app, req).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn ipv6_rotation_within_a_64_shares_a_bucket() {
    let app = hello().layer(RateLimitLayer::new(Limit::new(
        PeerIp::new(),
        Quota::per_minute(nz(3)),
    )));
    let statuses = [
        status(&app, req_from("[2001:db8:aa:bb::1]:1")).await,
        status(&app, req_from("[2001:db8:aa:bb:1234:5678:9abc:def0]:2")).await,
        status(&app, req_from("[2001:db8:aa:bb:ffff:ffff:ffff:ffff]:3")).await,
        status(&app, req_from("[2001:db8:aa:bb:dead:beef::7]:4")).await,
    ];
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    // The next /64 is someone else.
    assert_eq!(
        status(&app, req_from("[2001:db8:aa:bc::1]:1")).await,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_whole_seconds_rounded_up_never_zero() {
    // 10 per second, burst 1: the wait is 100 ms, sent as 1 s.
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(
            GlobalKey,
            Quota::per_second(nz(10)).with_burst(nz(1)),
        ))
        .with_clock(TokioClock::new()),
    );
    assert_eq!(status(&app, req_from("192.0.2.1:1")).await, StatusCode::OK);
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let cause = res.extensions().get::<RateLimited>().unwrap();
    assert_eq!(cause.retry_after, Some(Duration::from_millis(100)));
    assert_eq!(cause.reason, RateLimitReason::QuotaExceeded);
    assert_eq!(cause.policy, "per-second");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 429);
    assert!(
        json["type"]
            .as_str()
            .unwrap()
            .ends_with("#too-many-requests")
    );

    // 1 per minute: 60 s, then 0.5 s left is still 1 s.
    let routed = hello().layer(
        RateLimitLayer::new(Limit::new(GlobalKey, Quota::per_minute(nz(1))))
            .with_clock(TokioClock::new())
            .with_headers(HeaderStyle::IetfAndLegacy),
    );
    assert_eq!(
        status(&routed, req_from("192.0.2.1:1")).await,
        StatusCode::OK
    );
    let res = routed
        .clone()
        .oneshot(req_from("192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "60");
    assert_eq!(res.headers()["x-ratelimit-limit"], "1");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(res.headers()["x-ratelimit-reset"], "60");
    tokio::time::advance(Duration::from_millis(59_500)).await;
    let res = routed
        .clone()
        .oneshot(req_from("192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        status(&routed, req_from("192.0.2.1:1")).await,
        StatusCode::OK
    );
}

/// Per IP (burst 2) and per API key (burst 5) in one layer: a request refused by one limit
/// charges neither.
#[tokio::test]
async fn several_quotas_none_charged_when_one_fails() {
    let layer = RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_hour(nz(2))))
        .and(Limit::new(
            HeaderKey::new(HeaderName::from_static("x-api-key")),
            Quota::per_hour(nz(5)),
        ))
        .unwrap();
    let app = hello().layer(layer);
    let keyed = |ip: &str| with_header(req_from(ip), "x-api-key", "k1");
    assert_eq!(status(&app, keyed("192.0.2.1:1")).await, StatusCode::OK);
    let res = app.clone().oneshot(keyed("192.0.2.1:1")).await.unwrap();
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"per-hour\";q=2;w=3600, \"per-hour\";q=5;w=3600"
    );
    assert_eq!(
        res.headers()["ratelimit"],
        "\"per-hour\";r=0;t=3600, \"per-hour\";r=3;t=1440"
    );
    // Refused by the IP limit: the key is not charged.
    for _ in 0..3 {
        assert_eq!(
            status(&app, keyed("192.0.2.1:1")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(status(&app, keyed("192.0.2.2:1")).await, StatusCode::OK);
    assert_eq!(status(&app, keyed("192.0.2.2:1")).await, StatusCode::OK);
    assert_eq!(status(&app, keyed("192.0.2.3:1")).await, StatusCode::OK);
    // Now the key is spent (5): refused, and the IP limit of .4 is not charged either.
    assert_eq!(
        status(&app, keyed("192.0.2.4:1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, req_from("192.0.2.4:1")).await, StatusCode::OK);
    assert_eq!(status(&app, req_from("192.0.2.4:1")).await, StatusCode::OK);
}

#[tokio::test]
async fn cost_above_burst_is_refused_with_a_reason() {
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(GlobalKey, Q100)).with_cost(|req| {
            req.headers
                .get("x-cost")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1)
        }),
    );
    let res = app
        .clone()
        .oneshot(with_header(req_from("192.0.2.1:1"), "x-cost", "11"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_none());
    let cause = res.extensions().get::<RateLimited>().unwrap();
    assert_eq!(cause.reason, RateLimitReason::CostAboveBurst);
    assert_eq!(cause.retry_after, None);
    let res = app
        .oneshot(with_header(req_from("192.0.2.1:1"), "x-cost", "10"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], "\"per-minute\";r=0;t=6");
}

/// The real cost is charged after the response (LLM tokens used, reported by the handler).
#[tokio::test]
async fn adjustment_charges_the_real_cost() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Response::builder()
                    .header("x-tokens-used", "7")
                    .body(Body::from("ok"))
                    .unwrap()
            }),
        )
        .layer(
            RateLimitLayer::new(Limit::new(GlobalKey, Q100))
                .with_clock(ManualClock::new())
                .with_adjustment(|res| {
                    res.headers
                        .get("x-tokens-used")?
                        .to_str()
                        .ok()?
                        .parse()
                        .ok()
                }),
        );
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Charged 1 at decision time: 9 left when the headers were made; 7 were really used.
    assert_eq!(res.headers()["ratelimit"], "\"per-minute\";r=9;t=1");
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.headers()["ratelimit"], "\"per-minute\";r=2;t=5");
    // 3 left after the second adjustment charged 6 more: 10 - 7 - 7 < 0, in debt.
    assert_eq!(
        status(&app, req_from("192.0.2.1:1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Principal(&'static str);

#[tokio::test]
async fn per_principal_with_override() {
    let limit = Limit::new(ExtensionKey::<Principal>::new(), Quota::per_hour(nz(1))).with_override(
        Principal("gold"),
        Quota::per_hour(nz(3)).with_name("gold").unwrap(),
    );
    let app = hello().layer(RateLimitLayer::new(limit));
    let as_principal = |p: &'static str| {
        let mut r = req_from("192.0.2.1:1");
        r.extensions_mut().insert(Principal(p));
        r
    };
    assert_eq!(status(&app, as_principal("plain")).await, StatusCode::OK);
    assert_eq!(
        status(&app, as_principal("plain")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let res = app.clone().oneshot(as_principal("gold")).await.unwrap();
    assert_eq!(res.headers()["ratelimit-policy"], "\"gold\";q=3;w=3600");
    assert_eq!(status(&app, as_principal("gold")).await, StatusCode::OK);
    assert_eq!(status(&app, as_principal("gold")).await, StatusCode::OK);
    assert_eq!(
        status(&app, as_principal("gold")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Anonymous requests are not limited by a per-principal limit.
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("ratelimit").is_none());
}

#[tokio::test]
async fn missing_peer_address_is_a_500_problem() {
    let app = hello().layer(RateLimitLayer::new(Limit::new(PeerIp::new(), Q100)));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("internal-error"), "{text}");
    // The fix is named (issue 18), no internals are (the error's type, its kind).
    assert!(
        text.contains("into_make_service_with_connect_info") && text.contains("PeerAddr"),
        "the fix is named: {text}"
    );
    assert!(
        !text.contains("KeyError") && !text.contains("MissingPeerAddr"),
        "no internals in the body: {text}"
    );
}

#[tokio::test]
async fn headers_can_be_turned_off() {
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(GlobalKey, Quota::per_minute(nz(1))))
            .with_headers(HeaderStyle::None),
    );
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert!(res.headers().get("ratelimit").is_none());
    assert!(res.headers().get("ratelimit-policy").is_none());
    let res = app.oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
}

#[tokio::test]
async fn async_store_path() {
    let app = hello().layer(
        RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(2))))
            .with_store(SlowStore(MemoryStore::new())),
    );
    assert_eq!(status(&app, req_from("192.0.2.1:1")).await, StatusCode::OK);
    let res = app.clone().oneshot(req_from("192.0.2.1:1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], "\"per-minute\";r=0;t=60");
    assert_eq!(
        status(&app, req_from("192.0.2.1:1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Over a real loopback socket: the peer address comes from `ConnectInfo`.
#[tokio::test]
async fn real_socket_peer_ip() {
    let app = hello().layer(RateLimitLayer::new(Limit::new(
        PeerIp::new(),
        Quota::per_minute(nz(2)),
    )));
    let addr = serve::serve(app).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        let res = client.get(uri).await.unwrap();
        statuses.push(res.status());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(res.headers()["retry-after"], "30");
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

/// Per-route quotas: a layer per route, each with its own buckets.
#[tokio::test]
async fn per_route_quotas() {
    let app = Router::new()
        .route(
            "/cheap",
            get(|| async { "ok" }).layer(RateLimitLayer::new(Limit::new(
                PeerIp::new(),
                Quota::per_minute(nz(3)),
            ))),
        )
        .route(
            "/costly",
            get(|| async { "ok" }).layer(RateLimitLayer::new(Limit::new(
                PeerIp::new(),
                Quota::per_minute(nz(1)),
            ))),
        );
    let to = |path: &str| {
        let mut req = Request::get(path).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
        req
    };
    assert_eq!(status(&app, to("/costly")).await, StatusCode::OK);
    assert_eq!(
        status(&app, to("/costly")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(status(&app, to("/cheap")).await, StatusCode::OK);
    }
    assert_eq!(
        status(&app, to("/cheap")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A missing peer address logs exactly one ERROR event naming the misconfiguration.
#[test]
fn missing_peer_address_logs_one_error() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let app = hello().layer(RateLimitLayer::new(Limit::new(PeerIp::new(), Q100)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let status = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(app.oneshot(Request::get("/").body(Body::empty()).unwrap()))
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("ERROR").count(), 1, "{logs}");
    assert!(
        logs.contains("into_make_service_with_connect_info"),
        "{logs}"
    );
}
