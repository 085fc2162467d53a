//! Fuzzes the `Retry-After` parser (delay-seconds and HTTP-date): never a panic, and never a
//! delay above the backoff cap.
//!
//! Run with `cargo fuzz run retry_after` from the repository root.
#![no_main]

use battlement::retry::RetryPolicy;
use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = RetryPolicy::default();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value);
        if let Some(delay) = policy.retry_after(&headers) {
            assert!(delay <= policy.backoff().cap());
        }
    }
});
