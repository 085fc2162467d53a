//! Fuzzes the forwarding-header reader: any bytes in `Forwarded`, `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host`, from a trusted or an untrusted peer, give a
//! `ProxyView` and never a panic; from an untrusted peer nothing forwarded is believed.
//!
//! Run with `cargo fuzz run forwarded` from the repository root.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use battlement::net::{TrustedProxies, resolve};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let mut parts = data.split(|b| *b == b'\n');
    for name in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        if let Some(value) = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.append(name, value);
        }
    }
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let trusted = TrustedProxies::private_networks();
    let _ = resolve(&headers, Some(peer), &trusted);
    let untrusted = resolve(&headers, Some(peer), &TrustedProxies::none());
    assert!(!untrusted.via_trusted_proxy);
    assert_eq!(untrusted.client_ip, Some(peer));
});
