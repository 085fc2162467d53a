//! Integration tests of the retry layer: paused-time backoff, budget, idempotency, Retry-After,
//! body replay, per-attempt timeouts, axum routers and a real loopback upstream.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{Router, routing::any};
use battlement::retry::{
    ExponentialBackoff, Jitter, NonRetryable, ReplayBody, Retry, RetryBudget, RetryError,
    RetryErrorKind, RetryLayer, RetryPolicy,
};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, timeout::TimeoutLayer};

/// What the upstream saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: Method,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;
type Answer = Result<Response<Full<Bytes>>, BoxError>;

/// An upstream that records every attempt and answers with `script(attempt index)`.
fn upstream<B, F>(
    script: F,
) -> (
    impl Service<
        Request<ReplayBody<B>>,
        Response = Response<Full<Bytes>>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
    + Send
    + Sync
    + 'static,
    Log,
)
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    F: Fn(usize) -> Answer + Clone + Send + Sync + 'static,
{
    let log: Log = Arc::default();
    let svc = tower::service_fn({
        let log = log.clone();
        move |req: Request<ReplayBody<B>>| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let method = req.method().clone();
                let body = req.into_body().collect().await?.to_bytes();
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Seen {
                        at: Instant::now(),
                        method,
                        body,
                    });
                    log.len() - 1
                };
                script(n)
            }
        }
    });
    (svc, log)
}

fn status(code: u16) -> Answer {
    let mut res = Response::new(Full::new(Bytes::from_static(b"answer")));
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    Ok(res)
}

fn status_with_retry_after(code: u16, value: &str) -> Answer {
    let mut res = status(code)?;
    res.headers_mut()
        .insert(http::header::RETRY_AFTER, value.parse().unwrap());
    Ok(res)
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://upstream.test/x")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn gaps(log: &Log) -> Vec<Duration> {
    let log = log.lock().unwrap();
    log.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn backoff(jitter: Jitter) -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(10))
        .unwrap()
        .with_max_retries(5)
        .unwrap()
        .with_jitter(jitter)
}

/// Drives one always-503 GET on a paused runtime; returns the gaps between attempts.
fn gaps_on_paused_time(jitter: Jitter, seed: u64) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (svc, log) = upstream(|_| status(503));
        let policy = RetryPolicy::default()
            .with_backoff(backoff(jitter))
            .without_budget()
            .with_seed(seed);
        let res = RetryLayer::new(policy)
            .layer_service(svc)
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(log.lock().unwrap().len(), 6);
        gaps(&log)
    })
}

trait LayerExt<S> {
    type Service;
    fn layer_service(&self, s: S) -> Self::Service;
}

impl<S, C> LayerExt<S> for RetryLayer<C> {
    type Service = Retry<S, C>;
    fn layer_service(&self, s: S) -> Retry<S, C> {
        tower::Layer::layer(self, s)
    }
}

/// tokio's timer has millisecond resolution: a sleep ends up to 1 ms after its deadline.
const TICK: Duration = Duration::from_millis(1);

fn assert_within(gap: Duration, low: Duration, high: Duration) {
    assert!(
        gap >= low && gap <= high + TICK,
        "{gap:?} not within [{low:?}, {high:?}]"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn no_jitter_sleeps_the_exponential(seed: u64) {
        let b = backoff(Jitter::None);
        for (n, gap) in gaps_on_paused_time(Jitter::None, seed).into_iter().enumerate() {
            let exp = b.exponential(n as u32);
            assert_within(gap, exp, exp);
        }
    }

    #[test]
    fn full_jitter_sleeps_within_zero_and_exp(seed: u64) {
        let b = backoff(Jitter::Full);
        let gaps = gaps_on_paused_time(Jitter::Full, seed);
        let expected: Vec<_> = b.delays(seed).collect();
        for (n, gap) in gaps.into_iter().enumerate() {
            assert_within(gap, Duration::ZERO, b.exponential(n as u32));
            // Deterministic: the first request of a layer seeded with `seed` uses `seed`.
            assert_within(gap, expected[n], expected[n]);
        }
    }

    #[test]
    fn equal_jitter_sleeps_within_half_and_exp(seed: u64) {
        let b = backoff(Jitter::Equal);
        for (n, gap) in gaps_on_paused_time(Jitter::Equal, seed).into_iter().enumerate() {
            let exp = b.exponential(n as u32);
            assert_within(gap, exp / 2, exp);
        }
    }

    #[test]
    fn decorrelated_jitter_sleeps_within_initial_and_three_times_previous(seed: u64) {
        let b = backoff(Jitter::Decorrelated);
        let expected: Vec<_> = b.delays(seed).collect();
        let mut previous = b.initial();
        for (n, gap) in gaps_on_paused_time(Jitter::Decorrelated, seed).into_iter().enumerate() {
            assert_within(gap, b.initial(), (previous * 3).min(b.cap()));
            assert_within(gap, expected[n], expected[n]);
            previous = expected[n];
        }
    }
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_transient_failures() {
    let (svc, log) = upstream(|n| match n {
        0 => Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset").into()),
        1 => status(502),
        2 => status(504),
        _ => status(200),
    });
    let res = RetryLayer::default()
        .layer_service(svc)
        .oneshot(get())
        .await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn exhausted_errors_are_typed() {
    let (svc, log) = upstream(|_| Err(io::Error::other("refused").into()));
    let err = RetryLayer::default()
        .layer_service(svc)
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Exhausted);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.inner().to_string(), "refused");
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn statuses_outside_the_set_are_not_retried() {
    for code in [200, 400, 404, 500, 501] {
        let (svc, log) = upstream(move |_| status(code));
        let res = RetryLayer::default()
            .layer_service(svc)
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), code);
        assert_eq!(log.lock().unwrap().len(), 1, "status {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_attempts_under_total_failure() {
    const REQUESTS: usize = 200;
    let (svc, log) = upstream(|n| {
        if n % 2 == 0 {
            status(503)
        } else {
            Err(io::Error::other("reset").into())
        }
    });
    // 20 % of requests plus 1 retry per second over 10 s.
    let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.2).unwrap();
    let client = RetryLayer::new(RetryPolicy::default().with_budget(budget)).layer_service(svc);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let client = client.clone();
        tasks.spawn(async move { client.oneshot(get()).await });
    }
    let mut budget_errors = 0;
    while let Some(out) = tasks.join_next().await {
        if let Err(err) = out.unwrap()
            && err.kind() == RetryErrorKind::BudgetExhausted
        {
            budget_errors += 1;
        }
    }
    let attempts = log.lock().unwrap().len();
    // (1 + 0.2) × 200 + 10 (the minimum); without a budget it would be 4 × 200.
    assert!(attempts <= 250, "{attempts} attempts");
    assert!(attempts > REQUESTS, "the budget allowed no retry at all");
    assert!(budget_errors > 0);
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_by_default() {
    let (svc, log) = upstream(|_| status(503));
    let req = Request::post("http://upstream.test/orders")
        .header("idempotency-key", "k-1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let res = RetryLayer::default()
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.lock().unwrap().len(), 1);

    let (svc, log) = upstream(|_| Err(io::Error::other("reset").into()));
    let req = Request::patch("http://upstream.test/orders/1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let err = RetryLayer::default()
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::RequestNotRetryable);
    assert_eq!(err.attempts(), 1);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried_when_opted_in() {
    let (svc, log) = upstream(|n| if n < 2 { status(503) } else { status(201) });
    let client =
        RetryLayer::new(RetryPolicy::default().retry_with_idempotency_key()).layer_service(svc);
    let req = Request::post("http://upstream.test/orders")
        .header("idempotency-key", "k-1")
        .body(Full::new(Bytes::from_static(b"{\"item\":42}")))
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.body, "{\"item\":42}");
    }
    // Without the header, the same client sends a POST once.
    let req = Request::post("http://upstream.test/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    client.oneshot(req).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_honoured() {
    let (svc, log) = upstream(|n| {
        if n == 0 {
            status_with_retry_after(429, "3")
        } else {
            status(200)
        }
    });
    let res = RetryLayer::default()
        .layer_service(svc)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_within(
        gaps(&log)[0],
        Duration::from_secs(3),
        Duration::from_secs(3),
    );
}

fn fixed_now() -> SystemTime {
    // Sun, 06 Nov 1994 08:49:37 GMT
    SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_honoured() {
    let (svc, log) = upstream(|n| {
        if n == 0 {
            status_with_retry_after(503, "Sun, 06 Nov 1994 08:49:42 GMT")
        } else {
            status(200)
        }
    });
    let policy = RetryPolicy::default().with_wall_clock(fixed_now);
    let res = RetryLayer::new(policy)
        .layer_service(svc)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_within(
        gaps(&log)[0],
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_at_the_backoff_cap() {
    let (svc, log) = upstream(|n| match n {
        0 => status_with_retry_after(503, "3600"),
        1 => status_with_retry_after(503, "Sun, 06 Nov 1994 10:00:00 GMT"),
        _ => status(200),
    });
    let policy = RetryPolicy::default().with_wall_clock(fixed_now);
    RetryLayer::new(policy)
        .layer_service(svc)
        .oneshot(get())
        .await
        .unwrap();
    let gaps = gaps(&log);
    assert_within(gaps[0], Duration::from_secs(10), Duration::from_secs(10));
    assert_within(gaps[1], Duration::from_secs(10), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn body_over_the_limit_is_sent_once() {
    let (svc, log) = upstream(|_| status(503));
    let big = Bytes::from(vec![b'x'; 64 * 1024 + 1]);
    let req = Request::put("http://upstream.test/blob")
        .body(Full::new(big.clone()))
        .unwrap();
    let res = RetryLayer::default()
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, big);

    // The same size, exactly at the limit, is replayed.
    let (svc, log) = upstream(|n| if n == 0 { status(503) } else { status(200) });
    let at_limit = Bytes::from(vec![b'y'; 64 * 1024]);
    let req = Request::put("http://upstream.test/blob")
        .body(Full::new(at_limit.clone()))
        .unwrap();
    let res = RetryLayer::default()
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body == at_limit));
}

/// A streamed body of unknown size: `n` chunks of `size` bytes.
struct Stream {
    left: usize,
    size: usize,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; self.size])))))
    }
}

#[tokio::test(start_paused = true)]
async fn streamed_body_over_the_limit_is_sent_once() {
    let (svc, log) = upstream(|_| Err(io::Error::other("reset").into()));
    let policy = RetryPolicy::default().with_body_limit(1000).unwrap();
    let req = Request::put("http://upstream.test/blob")
        .body(Stream { left: 3, size: 400 })
        .unwrap();
    let err = RetryLayer::new(policy)
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::RequestNotRetryable);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.len(), 1200);

    // Under the limit, a streamed body is replayed whole.
    let (svc, log) = upstream(|n| if n == 0 { status(502) } else { status(200) });
    let req = Request::put("http://upstream.test/blob")
        .body(Stream { left: 2, size: 400 })
        .unwrap();
    let policy = RetryPolicy::default().with_body_limit(1000).unwrap();
    RetryLayer::new(policy)
        .layer_service(svc)
        .oneshot(req)
        .await
        .unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body.len() == 800));
}

#[tokio::test(start_paused = true)]
async fn marked_non_retryable_errors_are_not_retried() {
    let (svc, log) = upstream(|_| Err(NonRetryable::new("circuit open").into()));
    let err = RetryLayer::default()
        .layer_service(svc)
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::NotRetryable);
    assert_eq!(err.attempts(), 1);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_not_retried() {
    use battlement::circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, CircuitOpen};
    // The breaker opens on the first 503; the retry layer above it would retry a 503, but the
    // next attempt is rejected by the open breaker, and that rejection ends the retries.
    let (svc, log) = upstream(|_| status(503));
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(1)).unwrap();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::default())
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(svc);
    let err = client.oneshot(get()).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::NotRetryable);
    assert_eq!(err.attempts(), 2);
    assert!(
        err.inner().downcast_ref::<CircuitOpen>().is_some() || {
            let mut src = err.inner().source();
            let mut found = false;
            while let Some(e) = src {
                found |= e.is::<CircuitOpen>();
                src = e.source();
            }
            found
        }
    );
    assert_eq!(log.lock().unwrap().len(), 1, "the upstream was called once");
    assert_eq!(breaker.snapshot().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn custom_classifier() {
    let (svc, log) = upstream(|_| Err(io::Error::other("bad request").into()));
    let layer = RetryLayer::default().with_classifier(
        |e: &(dyn std::error::Error + Send + Sync + 'static)| {
            !e.to_string().contains("bad request")
        },
    );
    let err = layer.layer_service(svc).oneshot(get()).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::NotRetryable);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn composes_with_a_per_attempt_timeout() {
    let calls = Arc::new(AtomicU32::new(0));
    let slow_then_fast = tower::service_fn({
        let calls = calls.clone();
        move |_req: Request<ReplayBody<Full<Bytes>>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                status(200)
            }
        }
    });
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::default().with_backoff(
            ExponentialBackoff::DEFAULT.with_jitter(Jitter::None),
        )))
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(slow_then_fast);
    let start = Instant::now();
    let res = client.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // 1 s timeout + 100 ms backoff, not 30 s.
    assert_within(
        start.elapsed(),
        Duration::from_millis(1100),
        Duration::from_millis(1101),
    );
}

#[test]
fn layers_and_services_are_send_sync_static() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<RetryLayer>();
    check::<RetryPolicy>();
    check::<RetryBudget>();
    check::<Retry<Router>>();
    fn check_error<T: std::error::Error + Send + Sync + 'static>() {}
    check_error::<RetryError>();
    check_error::<NonRetryable>();
}

#[tokio::test(start_paused = true)]
async fn router_layer_retries_a_fragile_handler() {
    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/flaky",
            any({
                let calls = calls.clone();
                move |body: Bytes| async move {
                    assert_eq!(body, "payload");
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: RetryError| async { StatusCode::BAD_GATEWAY },
                ))
                .layer(RetryLayer::default()),
        );
    let req = Request::put("/flaky")
        .body(axum::body::Body::from("payload"))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A real upstream on loopback: the first `failures` requests get 503, then 200.
async fn fault_injecting_server(failures: u32) -> (SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let count = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/items",
        any({
            let bodies = bodies.clone();
            move |body: Bytes| async move {
                bodies.lock().unwrap().push(body);
                if count.fetch_add(1, Ordering::SeqCst) < failures {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "0")],
                        "down",
                    )
                } else {
                    (StatusCode::OK, [("retry-after", "0")], "up")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, bodies)
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy::default().with_backoff(
        ExponentialBackoff::new(Duration::from_millis(5), Duration::from_millis(50)).unwrap(),
    )
}

#[tokio::test]
async fn loopback_hyper_client_against_a_fault_injecting_server() {
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    let (addr, bodies) = fault_injecting_server(2).await;
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = RetryLayer::new(fast_policy()).layer_service(client);
    let req = Request::put(format!("http://{addr}/items"))
        .body(Full::new(Bytes::from_static(b"item-7")))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "up");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies, vec![Bytes::from_static(b"item-7"); 3]);
}

#[tokio::test]
async fn loopback_connection_refused_is_retried_then_typed() {
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    // A port with nothing listening.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = RetryLayer::new(fast_policy()).layer_service(client);
    let req = Request::get(format!("http://{addr}/items"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Exhausted);
    assert_eq!(err.attempts(), 4);
    let inner = err
        .inner()
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .unwrap();
    assert!(inner.is_connect());
}

#[tokio::test]
async fn loopback_dropped_connection_is_retried() {
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Raw TCP: the first connection is closed after the request is read, without an answer;
    // the next ones get 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU32::new(0));
    tokio::spawn({
        let connections = connections.clone();
        async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let n = connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(len) => buf.extend_from_slice(&chunk[..len]),
                        }
                    }
                    if n > 0 {
                        let answer =
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    // Dropping the socket closes the connection.
                });
            }
        }
    });
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = RetryLayer::new(fast_policy()).layer_service(client);
    let req = Request::get(format!("http://{addr}/items"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
