//! helmet 8's 12 default headers, as the anchors set them (one tower-http
//! `SetResponseHeaderLayer::overriding` each): shared by the benches and `examples/e2e_baseline.rs`.
#![allow(dead_code, unreachable_pub)]

use http::{HeaderName, HeaderValue};
use tower::{
    ServiceBuilder,
    layer::util::{Identity, Stack},
};
use tower_http::set_header::SetResponseHeaderLayer;

/// helmet's 12 defaults, names and values.
pub const HELMET: [(&str, &str); 12] = [
    (
        "content-security-policy",
        "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("referrer-policy", "no-referrer"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// The anchor layer for `HELMET[i]`.
pub fn helmet_layer(i: usize) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(HELMET[i].0),
        HeaderValue::from_static(HELMET[i].1),
    )
}

type H = SetResponseHeaderLayer<HeaderValue>;

/// The 12 anchor layers, one per header, stacked as a tower-http user would.
pub type HelmetLayers = Stack<
    H,
    Stack<
        H,
        Stack<
            H,
            Stack<
                H,
                Stack<
                    H,
                    Stack<H, Stack<H, Stack<H, Stack<H, Stack<H, Stack<H, Stack<H, Identity>>>>>>>,
                >,
            >,
        >,
    >,
>;

/// `ServiceBuilder::new().layer(helmet_layer(0))` … `.layer(helmet_layer(11))`, as one layer.
pub fn helmet_layers() -> HelmetLayers {
    ServiceBuilder::new()
        .layer(helmet_layer(0))
        .layer(helmet_layer(1))
        .layer(helmet_layer(2))
        .layer(helmet_layer(3))
        .layer(helmet_layer(4))
        .layer(helmet_layer(5))
        .layer(helmet_layer(6))
        .layer(helmet_layer(7))
        .layer(helmet_layer(8))
        .layer(helmet_layer(9))
        .layer(helmet_layer(10))
        .layer(helmet_layer(11))
        .into_inner()
}
