//! Integration tests of `battlement::circuit_breaker` on real axum routers, real loopback
//! sockets and tower clients.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::StatusCode, routing::get};
use battlement::{
    circuit_breaker::{
        Breaker, BreakerConfig, BreakerRegistry, CircuitBreakerLayer, CircuitOpen, Outcome, Reason,
        State,
    },
    problem::Problem,
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A router whose `/flaky` handler answers 500 while `failing` is set.
fn flaky_router(failing: Arc<AtomicBool>, calls: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/flaky",
        get(move || {
            let failing = failing.clone();
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn server_mode_answers_503_problem_with_retry_after_on_a_router() {
    let breaker =
        Breaker::new(BreakerConfig::consecutive_failures(3).cooldown(Duration::from_millis(2_500)))
            .unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = flaky_router(failing.clone(), calls.clone())
        .layer(CircuitBreakerLayer::new(breaker.clone()).server());

    for _ in 0..3 {
        let res = app.clone().oneshot(get_req("/flaky")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let res = app.clone().oneshot(get_req("/flaky")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // 2.5 s rounds up to 3.
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let cause = res.extensions().get::<CircuitOpen>().expect("typed cause");
    assert_eq!(cause.state(), State::Open);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 503);
    assert!(
        v["type"]
            .as_str()
            .unwrap()
            .ends_with("#service-unavailable")
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the handler was not called while open"
    );

    // Cooldown over, the handler recovered: one probe closes the breaker.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let res = app.clone().oneshot(get_req("/flaky")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn server_mode_retry_after_is_never_zero_while_probing() {
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(1)).unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let r = r.clone();
                async move {
                    r.notified().await;
                    StatusCode::OK
                }
            }),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()).server());
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    tokio::time::advance(Duration::from_secs(30)).await;
    // The probe hangs in the handler...
    let probe = tokio::spawn(app.clone().oneshot(get_req("/")));
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    // ...so the next request is rejected with a cooldown of zero, sent as 1 s.
    let res = app.clone().oneshot(get_req("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    release.notify_one();
    assert_eq!(probe.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn with_rejection_replaces_the_response_and_keeps_the_cause() {
    let breaker = Breaker::new(BreakerConfig::default()).unwrap();
    breaker.force_open();
    let plain = |p: Problem| {
        let mut res = Response::new(Body::from(p.slug()));
        *res.status_mut() = p.status();
        res
    };
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(CircuitBreakerLayer::new(breaker).with_rejection(plain));
    let res = app.oneshot(get_req("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<CircuitOpen>().unwrap().state(),
        State::ForcedOpen
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"service-unavailable");
}

#[tokio::test]
async fn client_errors_are_typed_and_inner_errors_pass_through() {
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(2)).unwrap();
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|_req: Request<Body>| async {
            Err::<Response<Body>, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        }));
    for _ in 0..2 {
        let err = client.clone().oneshot(get_req("/")).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }
    let err = client.clone().oneshot(get_req("/")).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
    assert_eq!(open.state(), State::Open);
    assert!(open.retry_after() > Duration::from_secs(29));
    assert!(err.to_string().starts_with("circuit breaker is open"));
    assert_eq!(breaker.snapshot().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_below_the_breaker_are_failures() {
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(2)).unwrap();
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .timeout(Duration::from_secs(1))
        .service(service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    for _ in 0..2 {
        let err = client.clone().oneshot(get_req("/")).await.unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>());
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test]
async fn classifier_4xx_are_not_failures_and_closures_replace_it() {
    let statuses = Router::new()
        .route("/404", get(|| async { StatusCode::NOT_FOUND }))
        .route("/429", get(|| async { StatusCode::TOO_MANY_REQUESTS }));

    let breaker = Breaker::new(BreakerConfig::consecutive_failures(2)).unwrap();
    let app = statuses
        .clone()
        .layer(CircuitBreakerLayer::new(breaker.clone()).server());
    for _ in 0..10 {
        let res = app.clone().oneshot(get_req("/404")).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = app.clone().oneshot(get_req("/429")).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().successes, 20);

    let breaker = Breaker::new(BreakerConfig::consecutive_failures(2)).unwrap();
    let overload = |res: Result<&Response<Body>, &Infallible>| match res {
        Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Failure,
        Ok(r) if r.status() == StatusCode::NOT_FOUND => Outcome::Ignored,
        _ => Outcome::Success,
    };
    let app = statuses.layer(
        CircuitBreakerLayer::new(breaker.clone())
            .classify(overload)
            .server(),
    );
    app.clone().oneshot(get_req("/404")).await.unwrap();
    assert_eq!(breaker.snapshot().ignored, 1);
    app.clone().oneshot(get_req("/429")).await.unwrap();
    app.clone().oneshot(get_req("/429")).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn per_key_breakers_are_isolated_and_bounded() {
    let registry = BreakerRegistry::new(BreakerConfig::consecutive_failures(2), 32).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let upstream = service_fn(move |req: Request<Body>| {
        s.fetch_add(1, Ordering::SeqCst);
        let bad = req.uri().host() == Some("bad.example");
        async move {
            let status = if bad { 502 } else { 200 };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Body::empty())
                    .unwrap(),
            )
        }
    });
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::per_key(
            registry.clone(),
            |req: &Request<Body>| req.uri().host().unwrap_or("").to_owned(),
        ))
        .service(upstream);

    for _ in 0..2 {
        let res = client
            .clone()
            .oneshot(get_req("http://bad.example/"))
            .await
            .unwrap();
        assert_eq!(res.status(), 502);
    }
    let err = client
        .clone()
        .oneshot(get_req("http://bad.example/x"))
        .await
        .unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.key(), Some("bad.example"));
    // The other upstream is untouched.
    for _ in 0..5 {
        let res = client
            .clone()
            .oneshot(get_req("http://good.example/"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 7);
    assert_eq!(
        registry.get(&"bad.example".to_owned()).unwrap().state(),
        State::Open
    );

    // A flood of distinct hosts stays within the bound, and the open breaker survives it.
    for i in 0..5_000 {
        let uri = format!("http://h{i}.example/");
        client.clone().oneshot(get_req(&uri)).await.unwrap();
    }
    assert!(registry.len() <= 32, "registry holds {}", registry.len());
    assert_eq!(
        registry.get(&"bad.example".to_owned()).unwrap().state(),
        State::Open
    );
}

/// 10,000 concurrent calls while half-open reach the inner service exactly N times.
#[test]
fn ten_thousand_concurrent_calls_while_half_open_admit_exactly_n() {
    const N: u32 = 7;
    const CALLS: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A hand-driven clock, since paused time needs a current-thread runtime.
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = now.clone();
        let breaker = Breaker::new(
            BreakerConfig::consecutive_failures(1)
                .half_open_permits(N)
                .clock(move || *n.lock().unwrap()),
        )
        .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        *now.lock().unwrap() += Duration::from_secs(30);

        let reached = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (r, g) = (reached.clone(), gate.clone());
        let inner = service_fn(move |_req: Request<Body>| {
            let (r, g) = (r.clone(), g.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                // Hold until the test releases every probe.
                g.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        });
        let svc = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service(inner);

        let start = Arc::new(tokio::sync::Barrier::new(CALLS));
        let tasks: Vec<_> = (0..CALLS)
            .map(|_| {
                let (svc, start) = (svc.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    svc.oneshot(get_req("/")).await
                })
            })
            .collect();

        // Wait until every call is decided: rejected, or held in the inner service.
        let deadline = Instant::now() + Duration::from_secs(60);
        while (breaker.snapshot().rejections as usize) + reached.load(Ordering::SeqCst) < CALLS
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(reached.load(Ordering::SeqCst), N as usize);
        assert_eq!(breaker.snapshot().rejections, (CALLS - N as usize) as u64);
        assert_eq!(breaker.state(), State::HalfOpen);

        gate.add_permits(N as usize);
        let (mut ok, mut rejected) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(res) => {
                    assert_eq!(res.status(), 200);
                    ok += 1;
                }
                Err(e) => {
                    assert!(e.is::<CircuitOpen>());
                    rejected += 1;
                }
            }
        }
        assert_eq!((ok, rejected), (N as usize, CALLS - N as usize));
        assert_eq!(reached.load(Ordering::SeqCst), N as usize);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.snapshot().successes, u64::from(N));
    });
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_does_not_leave_the_breaker_stuck() {
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(1)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    tokio::time::advance(Duration::from_secs(30)).await;
    let probe = svc.ready().await.unwrap().call(get_req("/"));
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(svc.ready().await.unwrap().call(get_req("/")).await.is_err());
    drop(probe); // e.g. the caller's own timeout fired
    assert!(breaker.try_acquire().unwrap().is_probe());
}

// ---- a real fault-injecting upstream on loopback ----

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn loopback_upstream_goes_closed_open_half_open_closed() {
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve(flaky_router(failing.clone(), calls.clone())).await;

    let transitions = Arc::new(Mutex::new(Vec::new()));
    let t = transitions.clone();
    let breaker = Breaker::new(
        BreakerConfig::consecutive_failures(3)
            .cooldown(Duration::from_millis(200))
            .on_state_change(move |c| t.lock().unwrap().push((c.from, c.to, c.reason))),
    )
    .unwrap();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(http);
    let uri = format!("http://{addr}/flaky");
    let req = || {
        Request::get(uri.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(client.clone().oneshot(req()).await.unwrap().status(), 500);
    }
    assert!(
        client
            .clone()
            .oneshot(req())
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(client.clone().oneshot(req()).await.unwrap().status(), 200);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Reason::CooldownElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
}

#[tokio::test]
async fn loopback_refused_connections_are_failures() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let breaker = Breaker::new(BreakerConfig::consecutive_failures(2)).unwrap();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(http);
    for _ in 0..2 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client.clone().oneshot(req).await.unwrap_err();
        assert!(!err.is::<CircuitOpen>());
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn layers_meet_router_bounds() {
    fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>(_: &T) {}
    let breaker = Breaker::new(BreakerConfig::default()).unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone()).server();
    assert_clone_send_sync(&layer);
    let registry = BreakerRegistry::new(BreakerConfig::default(), 8).unwrap();
    let keyed =
        CircuitBreakerLayer::per_key(registry, |req: &Request<Body>| req.uri().path().to_owned())
            .server();
    assert_clone_send_sync(&keyed);
    let _router: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
        .layer(keyed);
}
