//! RFC 9421 verification of a signed request, end to end through `VerifySignatureLayer`
//! (around a `service_fn` that answers 200), next to raw SHA-256 over the same body bytes.
//!
//! Goals: ≥ 0.9× raw SHA-256 throughput at 64 KiB; ≤ 3 µs for a 1 KiB request.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use battlement::{
    net::Scheme,
    signing::{
        BufferedBody, DigestAlgorithm, Key, KeyRing, NonceRequirement, VerifyPolicy,
        VerifySignatureLayer, content_digest, parse_signature_input, signature_base,
    },
};
use bytes::Bytes;
use criterion::{Throughput, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tower::{Layer, ServiceExt, service_fn};

const SIZES: &[(&str, usize)] = &[
    ("64b", 64),
    ("1k", 1024),
    ("64k", 64 * 1024),
    ("1m", 1024 * 1024),
];

/// Far in the future of the signature, well inside 300 s.
const NOW: u64 = 1_700_000_000;

fn signed_request(key: &Key, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://api.example.com/orders?id=42")
        .header("content-type", "application/json")
        .header(
            "content-digest",
            content_digest(DigestAlgorithm::Sha256, body),
        )
        .body(Full::new(body.clone()))
        .unwrap();
    let input = format!(
        r#"sig1=("@method" "@authority" "@target-uri" "content-digest");created={NOW};keyid="bench";alg="hmac-sha256""#
    );
    let parsed = parse_signature_input(input.as_bytes()).unwrap();
    let base = signature_base(&req, &parsed[0], Scheme::Http).unwrap();
    let sig = format!("sig1=:{}:", STANDARD.encode(key.sign(&base)));
    req.headers_mut()
        .insert("signature-input", input.parse().unwrap());
    req.headers_mut().insert("signature", sig.parse().unwrap());
    req
}

fn bench(c: &mut criterion::Criterion) {
    let rt = support::runtime();
    let key = Key::hmac_sha256("bench", &[42u8; 32]).unwrap();
    // Replays are not refused here (no nonce), so one signed request can be sent again and
    // again: this measures parsing, base, MAC, buffering and digest, not the replay store.
    let policy = VerifyPolicy::new()
        .nonce(NonceRequirement::Optional)
        .body_limit(2 * 1024 * 1024);
    let layer =
        VerifySignatureLayer::with_policy(KeyRing::new(key.clone()), policy).with_clock(|| NOW + 1);
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let verify = layer.layer(inner);
    let bare = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });

    let mut group = c.benchmark_group("signing_verify");
    for (name, size) in SIZES {
        let body = Bytes::from(vec![b'a'; *size]);
        let template = signed_request(&key, &body);
        group.throughput(Throughput::Bytes(*size as u64));

        group.bench_function(format!("sha256_{name}"), |b| {
            b.iter(|| std::hint::black_box(Sha256::digest(std::hint::black_box(&body[..]))))
        });
        group.bench_function(format!("bare_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::post("http://api.example.com/orders?id=42")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let svc = bare;
                async move {
                    let res = svc.oneshot(req).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                }
            })
        });
        group.bench_function(format!("verify_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let mut req = Request::new(Full::new(body.clone()));
                *req.method_mut() = template.method().clone();
                *req.uri_mut() = template.uri().clone();
                *req.headers_mut() = template.headers().clone();
                let svc = verify.clone();
                async move {
                    let res = svc.oneshot(req).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                }
            })
        });
    }
    group.finish();

    // The same, timed in CPU time of this thread (`/proc/thread-self/schedstat`) rather than
    // wall time: on a machine shared with other jobs the wall clock also counts the time this
    // thread waited for a core.
    let mut cpu = c.benchmark_group("signing_verify_cpu");
    for (name, size) in &SIZES[1..3] {
        let body = Bytes::from(vec![b'a'; *size]);
        let template = signed_request(&key, &body);
        cpu.throughput(Throughput::Bytes(*size as u64));
        cpu.bench_function(format!("sha256_{name}"), |b| {
            b.iter_custom(|iters| {
                let start = CpuClock::start();
                for _ in 0..iters {
                    std::hint::black_box(Sha256::digest(std::hint::black_box(&body[..])));
                }
                start.elapsed()
            })
        });
        cpu.bench_function(format!("verify_{name}"), |b| {
            b.iter_custom(|iters| {
                let start = CpuClock::start();
                rt.block_on(async {
                    for _ in 0..iters {
                        let mut req = Request::new(Full::new(body.clone()));
                        *req.method_mut() = template.method().clone();
                        *req.uri_mut() = template.uri().clone();
                        *req.headers_mut() = template.headers().clone();
                        let res = verify.clone().oneshot(req).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                    }
                });
                start.elapsed()
            })
        });
    }
    cpu.finish();

    let g = "signing_verify";
    for (name, size) in SIZES {
        match (
            support::median_ns(g, &format!("sha256_{name}")),
            support::median_ns(g, &format!("verify_{name}")),
            support::median_ns(g, &format!("bare_{name}")),
        ) {
            (Some(sha), Some(ver), Some(bare)) => {
                let mib_s = |ns: f64| *size as f64 / ns * 1e9 / (1024.0 * 1024.0);
                println!(
                    "[ratio] {g}: {name}: verify {ver:.0} ns ({:.3} µs, {:.0} MiB/s, bare {bare:.0} ns) vs \
                     sha256 {sha:.0} ns ({:.0} MiB/s) -> throughput ratio verify/sha256 {:.3}",
                    ver / 1000.0,
                    mib_s(ver),
                    mib_s(sha),
                    sha / ver
                );
            }
            _ => println!("[ratio] {g}: {name}: no estimate (filtered out?)"),
        }
    }
    let g = "signing_verify_cpu";
    for (name, size) in &SIZES[1..3] {
        if let (Some(sha), Some(ver)) = (
            support::median_ns(g, &format!("sha256_{name}")),
            support::median_ns(g, &format!("verify_{name}")),
        ) {
            println!(
                "[ratio] {g} (thread CPU time): {name}: verify {ver:.0} ns ({:.3} µs) vs sha256 {sha:.0} ns \
                 -> throughput ratio verify/sha256 {:.3} ({size} B)",
                ver / 1000.0,
                sha / ver
            );
        }
    }
}

/// CPU time of the current thread, from `/proc/thread-self/schedstat` (ns on CPU); falls
/// back to wall time where that file does not exist.
enum CpuClock {
    Cpu(u64),
    Wall(std::time::Instant),
}

impl CpuClock {
    fn read() -> Option<u64> {
        // The kernel brings the running thread's total up to date when it passes through the
        // scheduler; a yield makes sure it does.
        std::thread::yield_now();
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn start() -> Self {
        match Self::read() {
            Some(ns) => Self::Cpu(ns),
            None => Self::Wall(std::time::Instant::now()),
        }
    }

    fn elapsed(&self) -> std::time::Duration {
        match self {
            Self::Cpu(start) => std::time::Duration::from_nanos(
                Self::read().unwrap_or(*start).saturating_sub(*start),
            ),
            Self::Wall(t) => t.elapsed(),
        }
    }
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
