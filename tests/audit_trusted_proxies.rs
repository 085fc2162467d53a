//! The audit of `trusted_proxies` judges the ranges the stack will use (parsed as the stack
//! parses them) by how much public address space they cover: the spellings that slipped past a
//! literal `/0` check fail, a CDN's published ranges pass, and the verdict matches what the
//! stack does with a forged `X-Forwarded-For`.
#![cfg(feature = "config")]

use std::net::SocketAddr;

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    Stack,
    stack::{AuditStatus, ServerConfig, audit},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

fn with_proxies(ranges: &[&str]) -> ServerConfig {
    let mut cfg = ServerConfig::from_toml_str("").unwrap();
    cfg.trusted_proxies = ranges.iter().map(|r| (*r).to_owned()).collect();
    cfg
}

fn verdict(ranges: &[&str]) -> (AuditStatus, String) {
    let report = audit(&with_proxies(ranges));
    let item = report.check("trusted_proxies").next().unwrap();
    (item.status, item.reason.clone())
}

/// Cloudflare's published ranges (https://www.cloudflare.com/ips/).
const CLOUDFLARE: [&str; 22] = [
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

#[test]
fn public_space_at_large_fails_however_it_is_spelled() {
    let open: [&[&str]; 12] = [
        // The inputs.
        &[" 0.0.0.0/0"],
        &["0.0.0.0/0 "],
        &["0.0.0.0/0\t"],
        &["0.0.0.0/1", "128.0.0.0/1"],
        // And their IPv6 and piecewise cousins.
        &["::/0"],
        &[" ::/0\n"],
        &["::/1", "8000::/1"],
        &["2000::/3"],
        &[
            "10.0.0.0/8",
            "0.0.0.0/2",
            "64.0.0.0/2",
            "128.0.0.0/2",
            "192.0.0.0/2",
        ],
        // One public /8 is already "at large"; so is most of a /7 given in halves.
        &["1.0.0.0/8"],
        &["2.0.0.0/9", "2.128.0.0/9"],
        // A host part: truncated to the network the stack uses (`0.0.0.0/0`).
        &["1.2.3.4/0"],
    ];
    for ranges in open {
        let (status, detail) = verdict(ranges);
        assert_eq!(status, AuditStatus::Fail, "{ranges:?}: {detail}");
        assert!(detail.contains("public address space"), "{detail}");
    }
}

#[test]
fn private_ranges_and_a_cdns_published_list_pass() {
    let fine: [&[&str]; 6] = [
        &[],
        &["10.0.0.0/8", "::1/128"],
        &[
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ],
        &[
            "100.64.0.0/10",
            "169.254.0.0/16",
            "fe80::/10",
            "224.0.0.0/3",
        ],
        &CLOUDFLARE,
        // Trimmed like the stack trims it.
        &[" 10.0.0.0/8 "],
    ];
    for ranges in fine {
        let (status, detail) = verdict(ranges);
        assert_eq!(status, AuditStatus::Pass, "{ranges:?}: {detail}");
    }
    // The pass says how much public space is trusted.
    let (_, detail) = verdict(&CLOUDFLARE);
    assert!(detail.contains("1524736 public IPv4 addresses"), "{detail}");
    let (_, detail) = verdict(&["10.0.0.0/8"]);
    assert!(detail.contains("no public address"), "{detail}");
    // An entry the stack cannot parse fails the item too, naming the entry.
    let report = audit(&with_proxies(&["10.0.0.0/8", "10.0.0.0/33"]));
    let item = report.check("trusted_proxies").next().unwrap();
    assert_eq!(item.status, AuditStatus::Fail);
    assert_eq!(item.field, "trusted_proxies[1]");
}

/// 5 requests from one public peer, each claiming another client in `X-Forwarded-For`, against a
/// per-IP burst of 2: how many pass.
async fn forged_clients_passing(ranges: &[&str]) -> usize {
    let mut cfg = with_proxies(ranges);
    cfg.rate_limit.per_ip.requests = 2;
    cfg.rate_limit.per_ip.burst = Some(2);
    let app = Stack::from_config(&cfg)
        .unwrap()
        .wrap(Router::new().route("/", get(|| async { "ok" })));
    let mut passed = 0;
    for i in 0..5u8 {
        let mut req = Request::get("/")
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 40_000))));
        let res = app.clone().oneshot(req).await.unwrap();
        if res.status() == StatusCode::OK {
            passed += 1;
        }
    }
    passed
}

#[tokio::test]
async fn the_verdict_matches_what_the_stack_believes() {
    for ranges in [
        &["0.0.0.0/0\t"][..],
        &[" 0.0.0.0/0"],
        &["0.0.0.0/1", "128.0.0.0/1"],
    ] {
        // The stack believes every forged client: the audit fails it.
        assert_eq!(forged_clients_passing(ranges).await, 5, "{ranges:?}");
        assert_eq!(verdict(ranges).0, AuditStatus::Fail, "{ranges:?}");
    }
    for ranges in [&["10.0.0.0/8"][..], &CLOUDFLARE] {
        // The peer is not trusted: its forgeries are ignored and it is limited as itself.
        assert_eq!(forged_clients_passing(ranges).await, 2, "{ranges:?}");
        assert_eq!(verdict(ranges).0, AuditStatus::Pass, "{ranges:?}");
    }
}
