//! Integration tests of the Redis stores on a real Redis Cluster: three primaries and three
//! replicas started on loopback by the test (`redis-server --cluster-enabled yes`, then
//! `redis-cli --cluster create`).
//!
//! Without `redis-server` or `redis-cli` on the PATH the tests print a "skipped" line and
//! pass; with `BATTLEMENT_REQUIRE_REDIS=1` a missing binary fails them. The tests run one at a
//! time (each starts its own six servers).
#![cfg(feature = "redis-cluster")]

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    circuit_breaker::{BreakerConfig, State},
    rate_limit::{
        Check, Decision, GlobalKey, Limit, PeerIp, Quota, RateLimitLayer, RateLimitStore,
        StoreError, StoreResult, Verdict,
    },
    redis::{FailurePolicy, RedisConfig, RedisConnection, RedisRateLimitStore},
    signing::{ReplayCheck, ReplayStore},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

mod redis_support;

use redis_support::RedisCluster;

/// One cluster at a time: six servers each, on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero"),
    }
}

fn config(policy: FailurePolicy) -> RedisConfig {
    RedisConfig::new()
        .with_prefix("ct")
        .unwrap()
        .with_timeout(Duration::from_millis(250))
        .unwrap()
        .with_failure_policy(policy)
        .with_breaker(BreakerConfig::consecutive_failures(3).cooldown(Duration::from_millis(200)))
}

async fn connect(cluster: &RedisCluster, config: RedisConfig) -> RedisConnection {
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
    let conn = RedisConnection::connect_cluster(&seeds, config)
        .await
        .unwrap();
    assert!(conn.is_cluster());
    conn
}

fn check(identity: u64, limit_id: u64, burst: u32) -> Check {
    let q = Quota::per_hour(nz(burst));
    let emission = q.emission_interval().as_nanos() as u64;
    Check {
        key: Check::bucket(limit_id, identity),
        identity,
        emission_ns: emission,
        limit_ns: emission * u64::from(burst),
        cost: 1,
    }
}

async fn decide(store: &RedisRateLimitStore, checks: &[Check]) -> Result<Decision, StoreError> {
    match store.check(checks, 0) {
        StoreResult::Pending(f) => f.await,
        StoreResult::Ready(d) => d,
    }
}

fn request_from(ip: [u8; 4]) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_one_cluster_admit_one_quota() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let app = |store: RedisRateLimitStore| {
        Router::new().route("/", get(|| async { "ok" })).layer(
            RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(10))).with_id(1))
                .with_store(store),
        )
    };
    let a = app(connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .rate_limit_store());
    let b = app(connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .rate_limit_store());
    let (mut ok, mut limited) = (0, 0);
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = app
            .clone()
            .oneshot(request_from([203, 0, 113, 7]))
            .await
            .unwrap();
        match res.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(res.headers().contains_key("retry-after"));
                assert!(res.headers().contains_key("ratelimit"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    // One quota in total, not one per instance.
    assert_eq!((ok, limited), (10, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_10000_identities_spread_over_every_primary() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let store = connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .rate_limit_store();
    let deadline = Instant::now() + Duration::from_secs(60);
    // 10,000 identities, 100 decisions in flight at a time.
    for chunk in (0..10_000u64).collect::<Vec<_>>().chunks(100) {
        assert!(Instant::now() < deadline, "too slow");
        let mut tasks = tokio::task::JoinSet::new();
        for &id in chunk {
            let store = store.clone();
            // Two limits over each identity: one hash, one call.
            tasks.spawn(async move {
                decide(
                    &store,
                    &[check(id * 7919 + 1, 1, 5), check(id * 7919 + 1, 2, 50)],
                )
                .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert!(r.unwrap().unwrap().is_allowed());
        }
    }
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    let sizes: Vec<u64> = primaries
        .iter()
        .map(|p| {
            p.cmd("DBSIZE")
                .trim()
                .trim_start_matches(':')
                .parse()
                .unwrap()
        })
        .collect();
    // One hash per identity, about a third on each primary.
    assert_eq!(sizes.iter().sum::<u64>(), 10_000, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 2_500), "{sizes:?}");
    // Both limits of an identity are fields of its hash.
    let key = store.redis_key(1);
    let fields = cluster.primary_of(&key).cmd(&format!("HLEN {key}"));
    assert!(fields.starts_with(":2"), "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_identity_on_the_cluster() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let store = connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .rate_limit_store();
    // Warm up (scripts loaded, slot map known).
    decide(&store, &[check(99, 1, 5)]).await.unwrap();
    cluster.reset_stats();
    // Three limits over one identity: exactly one EVALSHA per decision.
    for i in 0..20 {
        let id = 1000 + i;
        let d = decide(
            &store,
            &[check(id, 1, 5), check(id, 2, 50), check(id, 3, 500)],
        )
        .await
        .unwrap();
        assert!(d.is_allowed());
    }
    assert_eq!(cluster.calls("evalsha"), 20);
    assert_eq!(cluster.calls("eval"), 0);
    // Two identities: one call each, no more.
    cluster.reset_stats();
    for i in 0..20 {
        decide(&store, &[check(2000 + i, 1, 5), check(3000 + i, 2, 5)])
            .await
            .unwrap();
    }
    assert_eq!(cluster.calls("evalsha"), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_a_later_identity_refunds_the_earlier_one() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // Every refusal goes to Redis (no local cache), so each one exercises the refund.
    let store = connect(
        &cluster,
        config(FailurePolicy::FailClosed)
            .with_local_cache(0)
            .unwrap(),
    )
    .await
    .rate_limit_store();
    // Per client (burst 3), then a global limit (burst 1) on another identity, another node
    // (or at least another slot).
    let node = |id: u64| cluster.primary_of(&store.redis_key(id)).port;
    let other = (12..100).find(|&id| node(id) != node(11)).unwrap();
    let client = check(11, 1, 3);
    let global = check(other, 2, 1);
    assert!(
        decide(&store, &[client, global])
            .await
            .unwrap()
            .is_allowed()
    );
    for _ in 0..5 {
        let d = decide(&store, &[client, global]).await.unwrap();
        assert!(
            matches!(d.verdict, Verdict::Denied { index: 1, .. }),
            "{d:?}"
        );
        // The client's limit shows its state once refunded: 2 left.
        assert_eq!(d.states()[0].remaining, 2);
    }
    // The refusals consumed none of the client's quota: 2 units left of 3.
    assert!(decide(&store, &[client]).await.unwrap().is_allowed());
    assert!(decide(&store, &[client]).await.unwrap().is_allowed());
    assert!(!decide(&store, &[client]).await.unwrap().is_allowed());

    // The same through the layer: per IP and global, over HTTP.
    let layer = RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(3))).with_id(5))
        .and(Limit::new(GlobalKey, Quota::per_minute(nz(1))).with_id(6))
        .unwrap()
        .with_store(store.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let send = |ip| app.clone().oneshot(request_from(ip));
    assert_eq!(
        send([198, 51, 100, 1]).await.unwrap().status(),
        StatusCode::OK
    );
    for _ in 0..4 {
        assert_eq!(
            send([198, 51, 100, 2]).await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // 198.51.100.2 was refused four times by the global limit and still has its 3 units.
    let only_ip =
        RateLimitLayer::new(Limit::new(PeerIp::new(), Quota::per_minute(nz(3))).with_id(5))
            .with_store(store.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(only_ip);
    for want in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let res = app
            .clone()
            .oneshot(request_from([198, 51, 100, 2]))
            .await
            .unwrap();
        assert_eq!(res.status(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_refused_across_instances_and_spread() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let a = connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .replay_store();
    let b = connect(&cluster, config(FailurePolicy::FailClosed))
        .await
        .replay_store();
    let ttl = Duration::from_secs(60);
    for i in 0..300 {
        let key = format!("key-1:nonce-{i}");
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(
            first.check_and_insert(&key, ttl).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            second.check_and_insert(&key, ttl).await.unwrap(),
            ReplayCheck::Replayed
        );
    }
    let sizes: Vec<u64> = cluster
        .primaries()
        .iter()
        .map(|p| {
            p.cmd("DBSIZE")
                .trim()
                .trim_start_matches(':')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 300, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 50), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_fails_over_and_decisions_come_back() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let conn = connect(
        &cluster,
        config(FailurePolicy::FailClosed)
            .with_local_cache(0)
            .unwrap(),
    )
    .await;
    let store = conn.rate_limit_store();
    let c = check(4242, 1, 1_000_000);
    assert!(decide(&store, &[c]).await.unwrap().is_allowed());
    let victim = cluster.primary_of(&store.redis_key(4242)).port;
    cluster.kill(victim);
    let killed = Instant::now();
    // Under load: a decision every 20 ms for at most 20 s. Each follows the policy (fail
    // closed: an error) or is a real decision; none waits past the timeout.
    let mut failed = 0;
    let mut back = None;
    let mut streak = 0;
    while killed.elapsed() < Duration::from_secs(20) {
        let started = Instant::now();
        let r = decide(&store, &[c]).await;
        assert!(
            started.elapsed() < Duration::from_millis(250 + 200),
            "a decision waited {:?}",
            started.elapsed()
        );
        match r {
            Ok(d) => {
                assert!(d.is_allowed());
                streak += 1;
                back.get_or_insert(killed.elapsed());
                if streak >= 20 {
                    break;
                }
            }
            Err(_) => {
                failed += 1;
                streak = 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = back.expect("decisions never came back after the failover");
    assert!(streak >= 20, "decisions did not stay back: streak {streak}");
    assert!(failed > 0, "the kill was not noticed");
    eprintln!("failover: {failed} decisions refused by the policy, back after {back:?}");
    // The replica was promoted: the slot has a live primary again, and the breaker closed.
    cluster.wait_ok(Duration::from_secs(10));
    assert_ne!(cluster.primary_of(&store.redis_key(4242)).port, victim);
    assert_eq!(conn.breaker().state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_with_mode_cluster_share_one_quota() {
    use battlement::stack::{ServerConfig, ServerStack};

    let _serial = SERIAL.lock().await;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let cfg = ServerConfig::from_toml_str(&format!(
        r#"
        [rate_limit.per_ip]
        requests = 6
        per = "1m"
        burst = 6

        [redis]
        mode = "cluster"
        url = "{}"
        prefix = "stack-cluster"
        on_failure = "closed"
        "#,
        cluster.urls().join(",")
    ))
    .unwrap();
    let a = ServerStack::from_config(&cfg).unwrap();
    let b = ServerStack::from_config(&cfg).unwrap();
    let store = a.rate_limit_store().unwrap().redis().unwrap().clone();
    assert!(store.connection().is_cluster());
    let app = |s: &ServerStack| s.wrap(Router::new().route("/", get(|| async { "ok" })));
    let (a, b) = (app(&a), app(&b));
    let mut codes = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        codes.push(
            app.clone()
                .oneshot(request_from([203, 0, 113, 9]))
                .await
                .unwrap()
                .status(),
        );
    }
    let ok = codes.iter().filter(|c| **c == StatusCode::OK).count();
    let limited = codes
        .iter()
        .filter(|c| **c == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (6, 6), "{codes:?}");
    // Not a single-slot layout: the key carries the identity as its hash tag.
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|p| p.cmd("KEYS *"))
        .collect();
    assert!(
        keys.iter().any(|k| k.contains("stack-cluster:rl:{")),
        "{keys:?}"
    );
}
