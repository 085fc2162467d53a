//! Fuzzes the RFC 9421 header parsers: `Signature-Input`, `Signature`, `Content-Digest`, and
//! the signature base built from whatever `Signature-Input` parses.
//!
//! Run with `cargo +nightly fuzz run signature_input` from the crate root.
#![no_main]

use battlement::{net::Scheme, signing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = signing::parse_signature(data);
    let _ = signing::verify_content_digest(data, b"body");
    if let Ok(inputs) = signing::parse_signature_input(data) {
        let req = http::Request::post("http://example.com/a?b=c&d")
            .header("content-digest", "sha-256=:AAAA:")
            .header("x-dict", "a=1, b=(x y)")
            .body(())
            .unwrap_or_default();
        for input in &inputs {
            let _ = signing::signature_base(&req, input, Scheme::Https);
        }
    }
});
