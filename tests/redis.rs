//! Integration tests of `battlement::redis` against a real `redis-server` started by the test.
//!
//! Without `redis-server` on the PATH the tests print "skipped: redis-server not found" and
//! pass; with `BATTLEMENT_REQUIRE_REDIS=1` a missing server fails them.
#![cfg(feature = "redis")]

use std::{
    io::Write,
    net::SocketAddr,
    num::NonZeroU32,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    circuit_breaker::{BreakerConfig, State},
    rate_limit::{GlobalKey, Limit, PeerIp, Quota, RateLimitLayer, RateLimitStore},
    redis::{FailurePolicy, RedisConfig, RedisConnection, RedisRateLimitStore},
    signing::{
        BufferedBody, Key, KeyRing, ReplayCheck, ReplayStore, SignRequestLayer, SignatureError,
        SignatureErrorKind, VerifySignatureLayer,
    },
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};

mod redis_support;

use redis_support::{
    RedisServer, free_port,
    http::{http_get, request, serve, status},
};

// ---------------------------------------------------------------------------------------------
// Helpers

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero"),
    }
}

fn config(policy: FailurePolicy) -> RedisConfig {
    RedisConfig::new()
        .with_prefix("test")
        .unwrap()
        .with_failure_policy(policy)
        .with_breaker(BreakerConfig::consecutive_failures(2).cooldown(Duration::from_millis(200)))
}

fn router(store: RedisRateLimitStore, quota: Quota) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(Limit::new(PeerIp::new(), quota).with_id(1)).with_store(store))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_two_ports_share_one_quota() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let quota = Quota::per_minute(nz(10));
    // Two instances: two connections, two routers, two sockets.
    let a = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let b = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let addr_a = serve(router(a.rate_limit_store(), quota.clone())).await;
    let addr_b = serve(router(b.rate_limit_store(), quota)).await;

    let (mut ok, mut limited) = (0, 0);
    for i in 0..30 {
        let code = http_get(if i % 2 == 0 { addr_a } else { addr_b }).await;
        match code {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // One quota's worth in total, not one per instance.
    assert_eq!((ok, limited), (10, 20));
    assert_eq!(a.breaker().state(), State::Closed);
}

#[tokio::test]
async fn multi_limit_weighted_decisions_are_all_or_nothing_in_one_round_trip() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let conn = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    // Per IP: burst 5; global: burst 8. Cost 2 per request.
    let layer =
        RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(5))).with_id(10))
            .and(
                Limit::new(
                    GlobalKey,
                    Quota::per_minute(nz(8)).with_name("global").unwrap(),
                )
                .with_id(11),
            )
            .unwrap()
            .with_cost(|_| 2)
            .with_store(conn.rate_limit_store());
    let cached = layer.store().clone();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);

    redis.cmd("CONFIG RESETSTAT");
    let mut decisions = 0;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let res = app.clone().oneshot(request()).await.unwrap();
        decisions += 1;
        codes.push(res.status());
        if res.status() == StatusCode::OK {
            assert!(
                res.headers()["ratelimit"]
                    .to_str()
                    .unwrap()
                    .contains("\"global\";r=")
            );
        }
    }
    // 2 + 2 pass (per IP 5 → 1 left), the third needs 2 per IP: refused, global not charged.
    assert_eq!(
        codes,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another client still finds 4 global units (8 − 2×2): the refusals charged nothing.
    let other = || {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 1], 1))));
        req
    };
    for want in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let res = app.clone().oneshot(other()).await.unwrap();
        decisions += 1;
        assert_eq!(res.status(), want);
    }
    // A cost above a burst is refused at once.
    let big = RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(5))).with_id(12))
        .with_cost(|_| 6)
        .with_store(conn.rate_limit_store());
    let res = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(big)
        .oneshot(request())
        .await
        .unwrap();
    decisions += 1;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Exactly one round trip per decision, by Redis's own statistics, but for the second
    // refusal of 203.0.113.7, answered by the local over-limit cache within its wait.
    assert_eq!(cached.local_refusals(), 1);
    assert_eq!(redis.calls("evalsha"), decisions - 1);
    assert_eq!(redis.calls("eval"), 0);
    assert_eq!(redis.calls("script|load"), 0);
    // Keys expire by themselves.
    let store = conn.rate_limit_store();
    let identity = {
        use std::hash::{BuildHasher, Hasher};
        // The global limit's key is `()`, which hashes to nothing.
        store.key_hasher().build_hasher().finish()
    };
    // The global limit's bucket is a field of its identity's hash, named by its fingerprint.
    let field = format!(
        "{:016x}",
        battlement::rate_limit::Check::bucket(11, identity)
    );
    let hexists = redis.cmd(&format!("HEXISTS {} {field}", store.redis_key(identity)));
    assert!(hexists.starts_with(":1"), "{hexists}");
    let ttl = redis.cmd(&format!("PTTL {}", store.redis_key(identity)));
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn noscript_is_reloaded_by_itself() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let conn = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let app = router(conn.rate_limit_store(), Quota::per_minute(nz(3)));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    redis.cmd("SCRIPT FLUSH");
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(status(&app).await.0, StatusCode::TOO_MANY_REQUESTS);
}

async fn sign(req: Request<Body>) -> Request<Body> {
    let ring = KeyRing::new(Key::hmac_sha256("client-1", &[7; 32]).unwrap());
    let signed: Request<BufferedBody> = ServiceBuilder::new()
        .layer(SignRequestLayer::new(ring))
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, std::convert::Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap();
    let (p, b) = signed.into_parts();
    Request::from_parts(p, Body::from(b.into_bytes()))
}

#[tokio::test]
async fn a_nonce_used_at_one_instance_is_refused_at_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let verifier = |conn: RedisConnection| {
        let ring = KeyRing::new(Key::hmac_sha256("client-1", &[7; 32]).unwrap());
        Router::new()
            .route("/orders", axum::routing::post(|| async { "done" }))
            .layer(VerifySignatureLayer::new(ring).with_replay_store(conn.replay_store()))
    };
    let a = verifier(
        RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
            .await
            .unwrap(),
    );
    let b = verifier(
        RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
            .await
            .unwrap(),
    );
    let req = sign(
        Request::post("http://api.example.com/orders")
            .body(Body::from("{\"qty\":1}"))
            .unwrap(),
    )
    .await;
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let again = Request::from_parts(parts.clone(), Body::from(body.clone()));
    let res = a
        .oneshot(Request::from_parts(parts, Body::from(body)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = b.oneshot(again).await.unwrap();
    let kind = res.extensions().get::<SignatureError>().map(|e| e.kind());
    assert_eq!(kind, Some(SignatureErrorKind::Replayed));
    assert_eq!(redis.cmd("DBSIZE").trim(), ":1");
}

/// Kills Redis mid-test under `policy`: the policy holds, nothing waits past the timeout,
/// and the stores go back to Redis by themselves once it is restarted.
async fn outage(policy: FailurePolicy) {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let timeout = battlement::redis::DEFAULT_TIMEOUT;
    let conn = RedisConnection::connect(&redis.url(), config(policy))
        .await
        .unwrap();
    let app = router(conn.rate_limit_store(), Quota::per_minute(nz(3)));
    let replay = conn.replay_store();
    let ttl = Duration::from_secs(60);
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(
        replay.check_and_insert("k:1", ttl).await,
        Ok(ReplayCheck::Fresh)
    );

    redis.kill();
    let margin = Duration::from_millis(150);
    let mut codes = Vec::new();
    let mut replays = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let start = Instant::now();
        let (code, headers) = status(&app).await;
        let took = start.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < timeout + margin,
            "request {i} waited {took:?} under {policy:?}"
        );
        codes.push((code, headers));
        let start = Instant::now();
        replays.push(replay.check_and_insert(&format!("k:{}", i % 2), ttl).await);
        assert!(start.elapsed() < timeout + margin);
    }
    assert_eq!(conn.breaker().state(), State::Open);
    eprintln!("{policy:?}: slowest request while Redis was down: {slowest:?}");
    match policy {
        FailurePolicy::FailOpen => {
            assert!(
                codes.iter().all(|&c| c == (StatusCode::OK, false)),
                "{codes:?}"
            );
            assert!(replays.iter().all(|r| *r == Ok(ReplayCheck::Fresh)));
        }
        FailurePolicy::FailClosed => {
            assert!(
                codes
                    .iter()
                    .all(|&(c, _)| c == StatusCode::SERVICE_UNAVAILABLE),
                "{codes:?}"
            );
            assert!(replays.iter().all(Result::is_err));
        }
        _ => {
            // The same quota, in memory, from a fresh bucket: 3 then refusals.
            let got: Vec<StatusCode> = codes.iter().map(|c| c.0).collect();
            assert_eq!(
                got[..4],
                [
                    StatusCode::OK,
                    StatusCode::OK,
                    StatusCode::OK,
                    StatusCode::TOO_MANY_REQUESTS
                ]
            );
            assert!(codes.iter().all(|c| c.1));
            assert_eq!(replays[0], Ok(ReplayCheck::Fresh));
            assert_eq!(replays[1], Ok(ReplayCheck::Fresh));
            assert_eq!(replays[2], Ok(ReplayCheck::Replayed));
        }
    }

    // Redis comes back (empty): after the cooldown a probe goes through and the breaker closes.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let _ = status(&app).await;
        assert!(start.elapsed() < timeout + margin);
        if conn.breaker().state() == State::Closed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never went back to Redis"
        );
    }
    // Decided by Redis again: its bucket is in Redis, and its state is Redis's.
    redis.cmd("CONFIG RESETSTAT");
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(redis.calls("evalsha"), 1);
    assert_eq!(
        replay.check_and_insert("k:1", ttl).await,
        Ok(ReplayCheck::Fresh)
    );
    assert_eq!(
        replay.check_and_insert("k:1", ttl).await,
        Ok(ReplayCheck::Replayed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_open() {
    outage(FailurePolicy::FailOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_closed() {
    outage(FailurePolicy::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fallback_to_memory() {
    outage(FailurePolicy::FallbackToMemory).await;
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_typed_errors() {
    use battlement::redis::ConnectErrorKind;
    let err = RedisConnection::connect("http://nope", RedisConfig::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::InvalidUrl);
    let err = RedisConnection::connect_lazy("redis://:secret-pw@127.0.0.1:1/", RedisConfig::new());
    assert!(err.is_ok());
    let port = free_port();
    let err = RedisConnection::connect(
        &format!("redis://user:secret-pw@127.0.0.1:{port}/"),
        RedisConfig::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable);
    assert!(!err.to_string().contains("secret-pw"));
    assert!(!format!("{err:?}").contains("secret-pw"));
}

#[test]
fn connect_lazy_outside_a_runtime_is_an_error() {
    let err = RedisConnection::connect_lazy("redis://127.0.0.1/", RedisConfig::new()).unwrap_err();
    assert_eq!(err.kind(), battlement::redis::ConnectErrorKind::NoRuntime);
}

/// Property: on random sequences of weighted two-limit requests, the Lua script decides
/// exactly like the in-memory store (same verdicts, same binding limit, same remaining units;
/// retry-after within the few milliseconds the test takes). Hourly quotas: nothing refills
/// while a case runs, so Redis's moving clock and the frozen in-memory one agree.
#[test]
fn the_script_decides_like_the_memory_store() {
    use battlement::rate_limit::{Check, MemoryStore, StoreResult, Verdict};
    use proptest::{
        collection::vec,
        test_runner::{Config, TestRunner},
    };

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = rt
        .block_on(RedisConnection::connect(
            &redis.url(),
            // Every decision on Redis (the local cache would answer repeated refusals).
            config(FailurePolicy::FailClosed)
                .with_local_cache(0)
                .unwrap(),
        ))
        .unwrap();
    let store = conn.rate_limit_store();
    let next_case = std::sync::atomic::AtomicU64::new(0);
    let mut runner = TestRunner::new(Config::with_cases(64));
    runner
        .run(
            &(1u32..12, 1u32..12, vec((0u64..3, 0u64..14), 1..40)),
            |(burst_a, burst_b, requests)| {
                let case = next_case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let check = |key: u64, burst: u32, cost: u64| {
                    let q = Quota::per_hour(nz(burst));
                    let emission = q.emission_interval().as_nanos() as u64;
                    Check {
                        key,
                        identity: key,
                        emission_ns: emission,
                        limit_ns: emission * u64::from(burst),
                        cost,
                    }
                };
                let memory = MemoryStore::new();
                for (client, cost) in requests {
                    // Limit A per client, limit B shared by every client of the case.
                    let checks = [
                        check((case << 8) | client, burst_a, cost),
                        check((case << 8) | 0xff, burst_b, cost),
                    ];
                    let want = match memory.check(&checks, 1_000) {
                        StoreResult::Ready(d) => d.unwrap(),
                        StoreResult::Pending(_) => unreachable!(),
                    };
                    let got = match store.check(&checks, 0) {
                        StoreResult::Pending(f) => rt.block_on(f).unwrap(),
                        StoreResult::Ready(_) => panic!("decided without Redis"),
                    };
                    match (want.verdict, got.verdict) {
                        (
                            Verdict::Denied {
                                index: i,
                                retry_after: w,
                            },
                            Verdict::Denied {
                                index: j,
                                retry_after: g,
                            },
                        ) => {
                            let diff = w.abs_diff(g);
                            proptest::prop_assert!(diff < Duration::from_secs(1), "{w:?} {g:?}");
                            proptest::prop_assert!(i == j || diff < Duration::from_millis(1));
                        }
                        (w, g) => proptest::prop_assert_eq!(w, g),
                    }
                    let rem = |d: &battlement::rate_limit::Decision| {
                        d.states().iter().map(|s| s.remaining).collect::<Vec<_>>()
                    };
                    proptest::prop_assert_eq!(rem(&want), rem(&got));
                }
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test]
async fn adjustments_reach_redis_in_the_background() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let conn = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    // Charged 1 up front, then the real cost from the handler's `x-cost` header.
    let layer =
        RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(10))).with_id(20))
            .with_adjustment(|res| res.headers.get("x-cost")?.to_str().ok()?.parse().ok())
            .with_store(conn.rate_limit_store());
    let app = Router::new()
        .route("/", get(|| async { ([("x-cost", "6")], "ok") }))
        .layer(layer);
    let remaining = |res: &http::Response<Body>| {
        let v = res.headers()["ratelimit"].to_str().unwrap().to_owned();
        v.split(";r=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let res = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(remaining(&res), 9);
    // The adjustment (+5) is sent after the response: wait for it.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if redis.calls("evalsha") >= 2 || Instant::now() > deadline {
            break;
        }
    }
    let res = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // 10 − 6 (first, adjusted) − 1 (this one, before its own adjustment).
    assert_eq!(remaining(&res), 3);
}

/// A Redis that hangs (SIGSTOP: the socket stays open, nothing answers) costs each request at
/// most the timeout, then nothing once the breaker is open; it is used again after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_timeout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let timeout = Duration::from_millis(50);
    let conn = RedisConnection::connect(
        &redis.url(),
        config(FailurePolicy::FallbackToMemory)
            .with_timeout(timeout)
            .unwrap(),
    )
    .await
    .unwrap();
    let app = router(conn.rate_limit_store(), Quota::per_minute(nz(100)));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    let before = redis.clients_running("evalsha");
    assert_eq!(before.len(), 1);

    redis.signal("STOP");
    let mut took = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        assert_eq!(status(&app).await, (StatusCode::OK, true));
        took.push(start.elapsed());
    }
    redis.signal("CONT");
    // The first two waited for the timeout and tripped the breaker; the rest did not wait.
    assert!(
        took.iter()
            .all(|&t| t < timeout + Duration::from_millis(100)),
        "{took:?}"
    );
    assert!(took[0] >= timeout && took[1] >= timeout, "{took:?}");
    assert!(
        took[2..].iter().all(|&t| t < Duration::from_millis(20)),
        "{took:?}"
    );
    assert_eq!(conn.breaker().state(), State::Open);

    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.breaker().state() != State::Closed {
        assert!(Instant::now() < deadline, "never went back to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = status(&app).await;
    }
    redis.cmd("CONFIG RESETSTAT");
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(redis.calls("evalsha"), 1);
    // The hung connection was replaced by a fresh one.
    let after = redis.clients_running("evalsha");
    assert!(
        !after.is_empty() && !after.contains(&before[0]),
        "{before:?} {after:?}"
    );
}

#[tokio::test]
async fn password_and_acl_user_from_the_url() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    assert!(
        redis
            .cmd("ACL SETUSER app on >s3cret-pw ~* &* +@all")
            .starts_with("+OK")
    );
    let url = format!("redis://app:s3cret-pw@127.0.0.1:{}/", redis.port);
    let conn = RedisConnection::connect(&url, config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let app = router(conn.rate_limit_store(), Quota::per_minute(nz(2)));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert!(redis.cmd("CLIENT LIST").contains("user=app"));

    let wrong = format!("redis://app:wrong-pw@127.0.0.1:{}/", redis.port);
    let err = RedisConnection::connect(&wrong, config(FailurePolicy::FailClosed))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), battlement::redis::ConnectErrorKind::Unreachable);
    assert!(!format!("{err} {err:?}").contains("wrong-pw"), "{err}");
}

#[cfg(not(feature = "redis-tls"))]
#[tokio::test]
async fn rediss_needs_the_tls_feature() {
    let err = RedisConnection::connect_lazy("rediss://127.0.0.1/", RedisConfig::new()).unwrap_err();
    assert_eq!(err.kind(), battlement::redis::ConnectErrorKind::InvalidUrl);
    assert!(err.to_string().contains("redis-tls"));
}

/// `rediss://` against a TLS-only `redis-server` with a private CA made by `openssl`.
#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn rediss_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("battlement-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let made = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=battlement-test-ca",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    if !made {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: openssl could not make test certificates"
        );
        return;
    }
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let Some(redis) = RedisServer::start_with(vec![
        "--tls-cert-file".into(),
        path("server.crt"),
        "--tls-key-file".into(),
        path("server.key"),
        "--tls-ca-cert-file".into(),
        path("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]) else {
        return;
    };
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let url = format!("rediss://localhost:{}/", redis.port);
    let conn =
        RedisConnection::connect(&url, config(FailurePolicy::FailClosed).with_tls_root_ca(ca))
            .await
            .unwrap();
    let app = router(conn.rate_limit_store(), Quota::per_minute(nz(1)));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(status(&app).await.0, StatusCode::TOO_MANY_REQUESTS);

    // Without the CA (the built-in roots only) the server is not trusted.
    let err = RedisConnection::connect(&url, config(FailurePolicy::FailClosed))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), battlement::redis::ConnectErrorKind::Unreachable);
    let _ = std::fs::remove_dir_all(&dir);
}

/// How a server picks Redis or memory at startup (e.g. from `BATTLEMENT_REDIS_URL`): the two
/// layer types joined with `tower::util::Either`, which `Router::layer` accepts.
#[tokio::test]
async fn redis_or_memory_chosen_at_startup_fits_router_layer() {
    use tower::util::Either;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    for url in [Some(redis.url()), None] {
        let per_ip = Limit::new(PeerIp::new(), Quota::per_minute(nz(1))).with_id(1);
        let layer = match &url {
            Some(url) => {
                let conn = RedisConnection::connect_lazy(url, RedisConfig::new()).unwrap();
                Either::Left(RateLimitLayer::new(per_ip).with_store(conn.rate_limit_store()))
            }
            None => Either::Right(RateLimitLayer::new(per_ip)),
        };
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        assert_eq!(status(&app).await, (StatusCode::OK, true));
        assert_eq!(status(&app).await.0, StatusCode::TOO_MANY_REQUESTS);
    }
    // The lazy connection loaded the script on first use (`NOSCRIPT`, then `SCRIPT LOAD`).
    assert_eq!(redis.cmd("DBSIZE").trim(), ":1");
}

fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
fn assert_send<T: Send + 'static>() {}

#[test]
fn stores_are_clone_send_sync() {
    assert_shareable::<RedisConnection>();
    assert_shareable::<RedisRateLimitStore>();
    assert_shareable::<battlement::redis::RedisReplayStore>();
    assert_shareable::<RedisConfig>();
    assert_send::<battlement::redis::DecisionFuture>();
    assert_send::<battlement::redis::ReplayFuture>();
}

#[tokio::test]
async fn key_layout() {
    // No server needed: the connection is made on first use.
    let conn =
        RedisConnection::connect_lazy("redis://127.0.0.1:1/", config(FailurePolicy::FailOpen))
            .unwrap();
    assert_eq!(
        conn.rate_limit_store().redis_key(42),
        "test:rl:{000000000000002a}"
    );
    let replay = conn.replay_store();
    assert_eq!(
        replay.redis_key("client-1:n0nce"),
        "test:nonce:client-1:n0nce"
    );
    let long = "x".repeat(200);
    let hashed = replay.redis_key(&long);
    assert!(hashed.starts_with("test:nonce:h:") && hashed.len() == "test:nonce:h:".len() + 64);
    assert!(replay.redis_key("with space").starts_with("test:nonce:h:"));
    // Fingerprints are the same for every instance with the same hash key, different with
    // another key.
    use std::hash::BuildHasher;
    let other =
        RedisConnection::connect_lazy("redis://127.0.0.1:1/", config(FailurePolicy::FailOpen))
            .unwrap()
            .rate_limit_store();
    let store = conn.rate_limit_store();
    let ip: std::net::IpAddr = [203, 0, 113, 7].into();
    assert_eq!(
        store.key_hasher().hash_one(ip),
        other.key_hasher().hash_one(ip)
    );
    let keyed = RedisConnection::connect_lazy(
        "redis://127.0.0.1:1/",
        config(FailurePolicy::FailOpen).with_hash_key([1; 16]),
    )
    .unwrap()
    .rate_limit_store();
    assert_ne!(
        store.key_hasher().hash_one(ip),
        keyed.key_hasher().hash_one(ip)
    );
}

#[tokio::test]
async fn clients_over_their_limit_are_refused_locally_with_the_same_headers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let conn = RedisConnection::connect(&redis.url(), config(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let store = conn.rate_limit_store();
    assert_eq!(
        store.local_cache_bytes() / 16_384 * 16_384,
        store.local_cache_bytes()
    );
    let app = router(store.clone(), Quota::per_minute(nz(2)));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    assert_eq!(status(&app).await, (StatusCode::OK, true));
    redis.cmd("CONFIG RESETSTAT");
    let first = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = first.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&wait), "{wait}");
    let state = first.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(state.contains(";r=0;"), "{state}");
    // A flood of 200 more: every one refused with Retry-After and RateLimit, none reaching
    // Redis (one EVALSHA for the first refusal only).
    for _ in 0..200 {
        let res = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let w: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(w >= 1 && w <= wait, "{w}");
        // The same state, its reset counted down.
        let now = res.headers()["ratelimit"].to_str().unwrap().to_owned();
        let (head, t) = now.split_once(";t=").unwrap();
        let (head0, t0) = state.split_once(";t=").unwrap();
        assert_eq!(head, head0);
        assert!(
            t.parse::<u64>().unwrap() <= t0.parse::<u64>().unwrap(),
            "{now} {state}"
        );
        assert!(
            res.extensions()
                .get::<battlement::rate_limit::RateLimited>()
                .is_some()
        );
    }
    assert_eq!(redis.calls("evalsha"), 1);
    assert_eq!(store.local_refusals(), 200);
    // Another client is not concerned.
    let mut other = Request::get("/").body(Body::empty()).unwrap();
    other
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 9], 1))));
    assert_eq!(
        app.clone().oneshot(other).await.unwrap().status(),
        StatusCode::OK
    );
}
