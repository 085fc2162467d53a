//! The `tracing` events of `battlement::redis`, in a process of their own: the test installs
//! the global subscriber.
#![cfg(feature = "redis")]

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    circuit_breaker::{BreakerConfig, State},
    rate_limit::{Limit, PeerIp, Quota, RateLimitLayer},
    redis::{FailurePolicy, RedisConfig, RedisConnection},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

mod redis_support;

use redis_support::RedisServer;

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf;

async fn status(app: &Router) -> StatusCode {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
    app.clone().oneshot(req).await.unwrap().status()
}

/// Every breaker transition while Redis goes away and comes back is a `battlement::redis`
/// event: error when the stores stop calling it, warn when probing, info when it is back.
#[tokio::test]
async fn outage_and_recovery_are_tracing_events() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_env_filter("battlement::redis=info")
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    #[cfg(feature = "metrics")]
    let snapshotter = {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    };

    let config = RedisConfig::new()
        .with_failure_policy(FailurePolicy::FallbackToMemory)
        .with_breaker(BreakerConfig::consecutive_failures(2).cooldown(Duration::from_millis(200)));
    let conn = RedisConnection::connect(&redis.url(), config)
        .await
        .unwrap();
    let quota = Quota::per_minute(NonZeroU32::new(100).unwrap());
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(Limit::new(PeerIp::new(), quota).with_id(1))
            .with_store(conn.rate_limit_store()),
    );
    assert_eq!(status(&app).await, StatusCode::OK);
    redis.kill();
    for _ in 0..4 {
        assert_eq!(status(&app).await, StatusCode::OK);
    }
    assert_eq!(conn.breaker().state(), State::Open);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.breaker().state() != State::Closed {
        assert!(Instant::now() < deadline, "never went back to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = status(&app).await;
    }

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let find = |parts: &[&str]| {
        out.lines()
            .position(|l| parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{out}"))
    };
    let opened = find(&[
        "ERROR",
        "battlement::redis",
        "Redis unavailable",
        "policy=FallbackToMemory",
    ]);
    let probing = find(&["WARN", "battlement::redis", "probing Redis again"]);
    let back = find(&["INFO", "battlement::redis", "Redis is back"]);
    assert!(opened < probing && probing < back, "{out}");

    // Every Redis call is timed: answered ones as `ok`, the outage as `error` or `timeout`.
    #[cfg(feature = "metrics")]
    {
        use metrics_util::debugging::DebugValue;
        let mut outcomes = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if key.name() != "battlement_store_duration_seconds" {
                continue;
            }
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            assert_eq!(label("store"), "redis");
            let DebugValue::Histogram(samples) = value else {
                panic!("a histogram")
            };
            *outcomes.entry(label("outcome")).or_insert(0) += samples.len();
        }
        assert!(
            outcomes.get("ok").copied().unwrap_or(0) >= 2,
            "{outcomes:?}"
        );
        assert!(
            outcomes.get("error").copied().unwrap_or(0)
                + outcomes.get("timeout").copied().unwrap_or(0)
                >= 1,
            "{outcomes:?}"
        );
    }
}
