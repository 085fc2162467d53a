//! Fuzzes the `Retry-After` parser (delay-seconds and HTTP-date): never a panic, and a
//! delay-seconds value is read as that many seconds (saturating; the retry layer caps it at
//! the backoff cap when it waits).
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
        let delay = policy.retry_after(&headers);
        let text = std::str::from_utf8(data).unwrap_or_default().trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs = text.parse::<u64>().unwrap_or(u64::MAX);
            assert_eq!(delay, Some(std::time::Duration::from_secs(secs)));
        }
    }
});
