//! Fuzzes the request-id parsers: any bytes as an incoming `x-request-id` or `traceparent`
//! give a valid id (kept or replaced) and never a panic; a kept id is the incoming one.
//!
//! Run with `cargo fuzz run request_id` from the repository root.
#![no_main]

use battlement::request_id::{RequestId, traceparent_trace_id};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(id) = traceparent_trace_id(data) {
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        if let Ok(id) = RequestId::new(value.clone()) {
            assert_eq!(id.header_value(), &value);
            assert!(!id.as_str().is_empty() && id.as_str().len() <= 128);
        }
    }
});
