//! Recovery after Redis restarts: the first probe after the cooldown goes to the new server
//! and succeeds (it does not fail on the connection to the old one).
#![cfg(feature = "redis")]

use std::{
    num::NonZeroU32,
    time::{Duration, Instant},
};

use battlement::{
    circuit_breaker::{BreakerConfig, State},
    rate_limit::{Check, Decision, Quota, RateLimitStore, StoreError, StoreResult},
    redis::{FailurePolicy, RedisConfig, RedisConnection, RedisRateLimitStore},
};

mod redis_support;

use redis_support::RedisServer;

const COOLDOWN: Duration = Duration::from_millis(300);

fn check(key: u64) -> Check {
    let q = Quota::per_hour(NonZeroU32::new(1000).unwrap());
    let emission = q.emission_interval().as_nanos() as u64;
    Check {
        key,
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
