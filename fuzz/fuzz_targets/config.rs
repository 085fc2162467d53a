//! Fuzzes the stack configuration: any text given to `ServerConfig::from_toml_str` is a config
//! or a `ConfigError`, never a panic; a config that parses gives an audit and a stack or an
//! error, never a panic either.
//!
//! Run with `cargo fuzz run config` from the repository root (seed it with `battlement.toml`).
#![no_main]

use battlement::stack::{ServerConfig, ServerStack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ServerConfig::from_toml_str(text) {
        let _ = config.audit().to_string();
        let _ = ServerStack::from_config(&config);
    }
});
