//! Redis outages and recovery: the first probe after Redis restarts goes to the new server
//! and succeeds (it does not fail on the connection to the old one); an outage is logged once
//! per state change and in periodic summaries, not once per refused request.
#![cfg(feature = "redis")]

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    circuit_breaker::{BreakerConfig, State},
    rate_limit::{
        Check, Decision, Limit, PeerIp, Quota, RateLimitLayer, RateLimitStore, StoreError,
        StoreResult,
    },
    redis::{FailurePolicy, RedisConfig, RedisConnection, RedisRateLimitStore},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

mod redis_support;

use redis_support::RedisServer;

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf;

const COOLDOWN: Duration = Duration::from_millis(300);

/// One test at a time: the one that reads its logs sets a subscriber for its thread only, and
/// `tracing` caches whether a callsite is enabled across threads, so events logged first by
/// the other test's thread could be missed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn check(key: u64) -> Check {
    let q = Quota::per_hour(NonZeroU32::new(1000).unwrap());
    let emission = q.emission_interval().as_nanos() as u64;
    Check {
        key,
        identity: key,
        emission_ns: emission,
        limit_ns: emission * 1000,
        cost: 1,
    }
}

async fn decide(store: &RedisRateLimitStore, key: u64) -> Result<Decision, StoreError> {
    match store.check(&[check(key)], 0) {
        StoreResult::Ready(d) => d,
        StoreResult::Pending(f) => f.await,
    }
}

/// Fail closed (a decision without Redis is an error, so every `Ok` went to Redis): Redis
/// killed, the breaker opens; Redis restarted on the same port half a second later; one
/// cooldown later the first
/// decision, the half-open probe, is answered by the new server and closes the breaker. Four
/// times in a row on one connection.
#[tokio::test]
async fn the_first_probe_after_a_restart_succeeds() {
    let _serial = SERIAL.lock().await;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let config = RedisConfig::new()
        .with_failure_policy(FailurePolicy::FailClosed)
        .with_timeout(Duration::from_millis(250))
        .unwrap()
        .with_breaker(BreakerConfig::consecutive_failures(2).cooldown(COOLDOWN));
    let conn = RedisConnection::connect(&redis.url(), config)
        .await
        .unwrap();
    let store = conn.rate_limit_store();
    for round in 0..4u64 {
        let key = 0x5eed_0000 + round;
        decide(&store, key).await.expect("Redis is up");
        redis.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.breaker().state() != State::Open {
            assert!(
                Instant::now() < deadline,
                "round {round}: the breaker never opened"
            );
            assert!(
                decide(&store, key).await.is_err(),
                "round {round}: Redis is down"
            );
        }
        // Down for longer than the redis crate's own reconnection attempts (the last one
        // failed before the restart), then up again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.restart();
        // Past the cooldown, with no call in between: the next decision is the probe.
        tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
        let first = decide(&store, key).await;
        assert!(
            first.is_ok(),
            "round {round}: the first decision after the restart failed: {first:?}"
        );
        assert_eq!(conn.breaker().state(), State::Closed, "round {round}");
        let exists = redis.cmd(&format!("EXISTS {}", store.redis_key(key)));
        assert!(exists.starts_with(":1"), "round {round}: {exists:?}");
    }
}

async fn status(app: &Router, client: u32) -> StatusCode {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    let ip = client.to_be_bytes();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    app.clone().oneshot(req).await.unwrap().status()
}

/// The lines at `level` (`ERROR`, `WARN`) in `text`.
fn lines<'a>(text: &'a str, level: &str) -> Vec<&'a str> {
    let tag = format!(" {level} ");
    text.lines().filter(|l| l.contains(&tag)).collect()
}

/// The value of `field=<n>` in `line`.
fn field(line: &str, field: &str) -> u64 {
    let tag = format!("{field}=");
    let at = line
        .find(&tag)
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        + tag.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {field}= in {line}"))
}

/// Fail closed, Redis down for 30 s (paused time) while 10,000 requests are refused: a handful
/// of ERROR and WARN lines (the breaker opening, then a summary at most every 10 s with the
/// count), not one per request; the breaker's rejection counter (and metric) counts every
/// refusal; the line saying Redis is back carries the total.
#[tokio::test]
async fn an_outage_is_logged_per_state_change_and_in_summaries() {
    let _serial = SERIAL.lock().await;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_env_filter("battlement=info")
        .finish();
    // This thread only (the test's runtime is single-threaded): the other test of the file
    // logs too.
    let _log = tracing::subscriber::set_default(subscriber);
    #[cfg(feature = "metrics")]
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    #[cfg(feature = "metrics")]
    let snapshotter = recorder.snapshotter();
    #[cfg(feature = "metrics")]
    let _metrics = metrics::set_default_local_recorder(&recorder);

    // Longer than the outage: no probe while time is paused (it would need real I/O).
    let cooldown = Duration::from_secs(35);
    let config = RedisConfig::new()
        .with_failure_policy(FailurePolicy::FailClosed)
        .with_timeout(Duration::from_millis(250))
        .unwrap()
        .with_breaker(BreakerConfig::consecutive_failures(2).cooldown(cooldown));
    let conn = RedisConnection::connect(&redis.url(), config)
        .await
        .unwrap();
    let quota = Quota::per_minute(NonZeroU32::new(100).unwrap());
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(Limit::new(PeerIp::new(), quota).with_id(1))
            .with_store(conn.rate_limit_store()),
    );
    assert_eq!(status(&app, 1).await, StatusCode::OK);
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.breaker().state() != State::Open {
        assert!(Instant::now() < deadline, "the breaker never opened");
        assert_eq!(status(&app, 1).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    let opened = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        lines(&opened, "ERROR")
            .iter()
            .filter(|l| l.contains("Redis unavailable: stores stop calling it"))
            .count(),
        1,
        "{opened}"
    );
    let logged = buf.0.lock().unwrap().len();
    let rejected = conn.breaker().snapshot().rejections;

    tokio::time::pause();
    for i in 0..10_000u32 {
        assert_eq!(status(&app, i).await, StatusCode::SERVICE_UNAVAILABLE);
        if i % 1000 == 999 {
            tokio::time::advance(Duration::from_secs(3)).await;
        }
    }
    assert_eq!(conn.breaker().snapshot().rejections - rejected, 10_000);
    let out = String::from_utf8(buf.0.lock().unwrap()[logged..].to_vec()).unwrap();
    let (errors, warns) = (lines(&out, "ERROR"), lines(&out, "WARN"));
    assert!(errors.is_empty(), "{out}");
    // 30 s of outage: summaries at 12 s and 24 s (at most one per 10 s).
    assert_eq!(warns.len(), 2, "{out}");
    let mut summarised = 0;
    for w in &warns {
        assert!(w.contains("battlement::redis"), "{w}");
        assert!(w.contains("Redis still unavailable"), "{w}");
        assert!(
            w.contains("rate-limit decisions refused (fail closed)"),
            "{w}"
        );
        assert_eq!(
            field(w, "decisions_since_down"),
            summarised + field(w, "decisions")
        );
        summarised += field(w, "decisions");
    }
    assert_eq!(summarised, 8001, "{out}");

    // Back: one line, with the total.
    tokio::time::advance(Duration::from_secs(6)).await;
    tokio::time::resume();
    redis.restart();
    assert_eq!(status(&app, 1).await, StatusCode::OK);
    assert_eq!(conn.breaker().state(), State::Closed);
    let out = String::from_utf8(buf.0.lock().unwrap()[logged..].to_vec()).unwrap();
    let back = out
        .lines()
        .find(|l| l.contains(" INFO ") && l.contains("Redis is back"))
        .unwrap_or_else(|| panic!("no line saying Redis is back in:\n{out}"));
    assert_eq!(field(back, "decisions_without_redis"), 10_000, "{back}");

    #[cfg(feature = "metrics")]
    {
        use metrics_util::debugging::DebugValue;
        let refused: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, _, _, _)| k.key().name() == "battlement_circuit_breaker_rejections_total")
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => n,
                other => panic!("a counter: {other:?}"),
            })
            .sum();
        assert_eq!(refused, conn.breaker().snapshot().rejections);
        assert!(refused >= 10_000, "{refused}");
    }
}
