//! Fuzzes the Content-Security-Policy builder: any directive name and source list is either
//! refused with a `ConfigError` or renders a header value free of `;`-injected directives and
//! control characters.
//!
//! Run with `cargo fuzz run csp` from the repository root.
#![no_main]

use battlement::security_headers::ContentSecurityPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\n');
    let name = parts.next().unwrap_or_default();
    let sources: Vec<&str> = parts.collect();
    if let Ok(csp) = ContentSecurityPolicy::empty().directive(name, sources.iter().copied()) {
        let rendered = csp.to_string();
        assert!(!rendered.bytes().any(|b| b.is_ascii_control()));
        assert!(rendered.matches(';').count() <= 1, "one directive, no injected ones: {rendered}");
        assert!(http::HeaderValue::from_str(&rendered).is_ok());
    }
});
