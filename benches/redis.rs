//! The Redis rate-limit store against a local `redis-server` started by the bench (skipped
//! with a message when absent).
//!
//! 1. Criterion, one group over a bare `service_fn`: the layer on the in-memory store, the
//!    layer on the Redis store, and the floor: the bare service plus one `PING` round trip on
//!    the same connection; and the store's decision alone (`store_check`). The printed ratio
//!    compares the Redis decision's overhead with a bare round trip's.
//! 2. A bounded load loop (a fixed count, stopped after a time cap): decisions per second and
//!    p50/p99 latency, sequential and with 32 requests in flight on the one multiplexed
//!    connection, next to `PING` done the same way.
//! 3. The local over-limit cache: Redis commands (`INFO commandstats`) for 10,000 requests
//!    from 1,000 clients that are all over their limit, with the cache and without.
//! 4. With the `redis-cluster` feature, the same decisions per second and cache figures on a
//!    local Redis Cluster (three primaries, three replicas; needs `redis-cli`).

#[path = "support/mod.rs"]
mod support;

#[cfg(feature = "redis-cluster")]
#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener, TcpStream},
    num::NonZeroU32,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo};
use battlement::{
    rate_limit::{Check, Limit, PeerIp, Quota, RateLimitLayer, RateLimitStore, StoreResult},
    redis::{RedisConfig, RedisConnection},
};
use criterion::criterion_main;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

const RATE: NonZeroU32 = NonZeroU32::new(1_000_000_000).unwrap();

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Server, String)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((server, format!("redis://127.0.0.1:{port}/")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn request(i: u32) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    // 4096 clients round-robin.
    let ip = [10, 0, (i >> 8 & 0xf) as u8, i as u8];
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    req
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_stats(what: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort_unstable();
    let n = lat.len();
    println!(
        "[redis] {what}: {n} ops in {:.2} s -> {:.0} ops/s, p50 {:.1} us, p99 {:.1} us",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
    );
}

fn benches(c: &mut criterion::Criterion) {
    let Some((_server, url)) = start_redis() else {
        println!("[redis] skipped: redis-server not found");
        return;
    };
    let rt = support::runtime();
    let conn = rt
        .block_on(RedisConnection::connect(&url, RedisConfig::new()))
        .expect("connect to the bench's redis-server");
    let bare = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let limit = || Limit::new(PeerIp::new(), Quota::per_second(RATE)).with_id(1);
    let memory = RateLimitLayer::new(limit()).layer(bare);
    let redis = RateLimitLayer::new(limit())
        .with_store(conn.rate_limit_store())
        .layer(bare);
    let ping_conn = conn.clone();
    let ping_floor = service_fn(move |_req: Request<Body>| {
        let conn = ping_conn.clone();
        async move {
            ping(&conn).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });

    let mut group = c.benchmark_group("redis");
    macro_rules! bench {
        ($id:literal, $svc:expr) => {{
            let svc = $svc;
            let mut i = 0u32;
            group.bench_function($id, |b| {
                b.to_async(&rt).iter(|| {
                    i = i.wrapping_add(1);
                    let svc = svc.clone();
                    async move {
                        let res = svc.oneshot(request(i)).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                    }
                })
            });
        }};
    }
    bench!("bare", bare);
    bench!("memory_store", memory);
    bench!("ping_floor", ping_floor);
    bench!("redis_store", redis.clone());
    // The store alone (no layer, no request): one decision, one `EVALSHA`.
    let store = conn.rate_limit_store();
    let mut i = 0u64;
    group.bench_function("store_check", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            let check = Check {
                key: i % 4096,
                identity: i % 4096,
                emission_ns: 1,
                limit_ns: 1_000_000_000,
                cost: 1,
            };
            let decision = match store.check(&[check], 0) {
                StoreResult::Pending(f) => f,
                StoreResult::Ready(_) => panic!("decided without Redis"),
            };
            async move { assert!(decision.await.unwrap().is_allowed()) }
        })
    });
    group.finish();
    support::report("redis", "bare", &[("redis_store", "ping_floor")]);

    // The bounded load loop.
    const COUNT: u32 = 20_000;
    const CAP: Duration = Duration::from_secs(10);
    rt.block_on(async {
        for what in ["PING", "decision"] {
            let mut lat = Vec::with_capacity(COUNT as usize);
            let start = Instant::now();
            for i in 0..COUNT {
                let t = Instant::now();
                if what == "PING" {
                    ping(&conn).await;
                } else {
                    let res = redis.clone().oneshot(request(i)).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                }
                lat.push(t.elapsed());
                if start.elapsed() > CAP {
                    break;
                }
            }
            print_stats(&format!("sequential {what}"), lat, start.elapsed());
        }
        for what in ["PING", "decision"] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..32u32)
                .map(|t| {
                    let conn = conn.clone();
                    let mut svc = redis.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity((COUNT / 32) as usize);
                        for i in 0..COUNT / 32 {
                            let at = Instant::now();
                            if what == "PING" {
                                ping(&conn).await;
                            } else {
                                let svc = svc.ready().await.unwrap();
                                let res = svc.call(request(t * 1000 + i)).await.unwrap();
                                assert_eq!(res.status(), StatusCode::OK);
                            }
                            lat.push(at.elapsed());
                            if start.elapsed() > CAP {
                                break;
                            }
                        }
                        lat
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.unwrap());
            }
            print_stats(&format!("32 in flight {what}"), lat, start.elapsed());
        }
    });
    let b = conn.breaker().snapshot();
    println!(
        "[redis] breaker: state {}, {} calls, {} failures",
        b.state, b.calls, b.failures
    );

    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    rt.block_on(async {
        for cache in [true, false] {
            let conn = RedisConnection::connect(&url, bench_config(cache))
                .await
                .expect("connect");
            let calls = over_limit_flood(&conn.rate_limit_store(), || {
                evalsha_calls(&[port])
            })
            .await;
            println!(
                "[redis] standalone, 10,000 requests from 1,000 clients over their limit, cache {}: {calls} EVALSHA",
                if cache { "on" } else { "off" }
            );
        }
    });

    #[cfg(feature = "redis-cluster")]
    cluster(&rt);
}

fn bench_config(cache: bool) -> RedisConfig {
    RedisConfig::new()
        .with_prefix(if cache { "cache-on" } else { "cache-off" })
        .unwrap()
        .with_timeout(Duration::from_millis(500))
        .unwrap()
        .with_local_cache(if cache { 16_384 } else { 0 })
        .unwrap()
}

/// `cmdstat_evalsha` calls summed over the servers on `ports`.
fn evalsha_calls(ports: &[u16]) -> u64 {
    use std::io::{Read, Write};
    ports
        .iter()
        .map(|&p| {
            let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"INFO commandstats\r\n").unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 16384];
            loop {
                let n = s.read(&mut buf).unwrap();
                out.extend_from_slice(&buf[..n]);
                if n == 0 || out.ends_with(b"\r\n\r\n") || out.len() > 1 << 20 {
                    break;
                }
                let text = String::from_utf8_lossy(&out);
                let complete = text
                    .strip_prefix('$')
                    .and_then(|r| r.split_once("\r\n"))
                    .is_some_and(|(len, body)| {
                        len.parse::<usize>().is_ok_and(|l| body.len() >= l + 2)
                    });
                if complete {
                    break;
                }
            }
            String::from_utf8_lossy(&out)
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// 1,000 clients (burst 1 an hour) each admitted once and refused once, then 10,000 more
/// requests round-robin, all refused: the `EVALSHA` calls those 10,000 cost.
async fn over_limit_flood(
    store: &battlement::redis::RedisRateLimitStore,
    calls: impl Fn() -> u64,
) -> u64 {
    let q = Quota::per_hour(NonZeroU32::new(1).unwrap());
    let emission = q.emission_interval().as_nanos() as u64;
    let check = |id: u64| Check {
        key: Check::bucket(1, id),
        identity: id,
        emission_ns: emission,
        limit_ns: emission,
        cost: 1,
    };
    let clock = Instant::now();
    let now = || clock.elapsed().as_nanos() as u64;
    let decide = |id: u64| {
        let r = store.check(&[check(id)], now());
        async move {
            match r {
                StoreResult::Ready(d) => d.unwrap(),
                StoreResult::Pending(f) => f.await.unwrap(),
            }
        }
    };
    for id in 0..1_000u64 {
        assert!(decide(id).await.is_allowed());
        assert!(!decide(id).await.is_allowed());
    }
    let before = calls();
    for i in 0..10_000u64 {
        let d = decide(i % 1_000).await;
        assert!(!d.is_allowed());
        assert!(
            matches!(d.verdict, battlement::rate_limit::Verdict::Denied { retry_after, .. } if retry_after > Duration::from_secs(3000))
        );
    }
    calls() - before
}

#[cfg(feature = "redis-cluster")]
fn cluster(rt: &tokio::runtime::Runtime) {
    let Some(cluster) = redis_support::RedisCluster::start() else {
        println!("[redis] cluster skipped: redis-server or redis-cli not found");
        return;
    };
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
    let ports: Vec<u16> = urls
        .iter()
        .filter_map(|u| u.trim_end_matches('/').rsplit(':').next()?.parse().ok())
        .collect();
    rt.block_on(async {
        let conn = RedisConnection::connect_cluster(&seeds, bench_config(false))
            .await
            .expect("connect to the bench's cluster");
        let store = conn.rate_limit_store();
        let check = |i: u64| Check {
            key: Check::bucket(1, i),
            identity: i,
            emission_ns: 1,
            limit_ns: 1_000_000_000,
            cost: 1,
        };
        const COUNT: u64 = 20_000;
        const CAP: Duration = Duration::from_secs(10);
        for in_flight in [1u64, 32, 128] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..in_flight)
                .map(|t| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        for i in 0..COUNT / in_flight {
                            let at = Instant::now();
                            let d = match store.check(&[check(t * 1_000_000 + i)], 0) {
                                StoreResult::Pending(f) => f.await.unwrap(),
                                StoreResult::Ready(d) => d.unwrap(),
                            };
                            assert!(d.is_allowed());
                            lat.push(at.elapsed());
                            if start.elapsed() > CAP {
                                break;
                            }
                        }
                        lat
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.unwrap());
            }
            print_stats(
                &format!("cluster (3 primaries), {in_flight} in flight, decisions"),
                lat,
                start.elapsed(),
            );
        }
        for cache in [true, false] {
            let conn = RedisConnection::connect_cluster(&seeds, bench_config(cache))
                .await
                .expect("connect");
            let calls = over_limit_flood(&conn.rate_limit_store(), || evalsha_calls(&ports)).await;
            println!(
                "[redis] cluster, 10,000 requests from 1,000 clients over their limit, cache {}: {calls} EVALSHA",
                if cache { "on" } else { "off" }
            );
        }
    });
}

async fn ping(conn: &RedisConnection) {
    conn.ping().await.expect("PING");
}

fn all() {
    let mut c = support::criterion();
    benches(&mut c);
}

criterion_main!(all);
