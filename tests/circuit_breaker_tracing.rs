//! The `tracing` events of `battlement::circuit_breaker`, in a process of their own: the test
//! installs the global subscriber.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use battlement::circuit_breaker::{BreakerConfig, BreakerRegistry, Outcome};

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf;

#[test]
fn every_state_change_is_a_tracing_event() {
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let now = Arc::new(Mutex::new(Instant::now()));
    let n = now.clone();
    let registry = BreakerRegistry::new(
        BreakerConfig::consecutive_failures(1).clock(move || *n.lock().unwrap()),
        4,
    )
    .unwrap();
    let b = registry.breaker(&"api.example".to_owned());
    b.try_acquire().unwrap().record(Outcome::Failure);
    *now.lock().unwrap() += Duration::from_secs(30);
    b.try_acquire().unwrap().record(Outcome::Success);
    b.force_open();

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let has = |i: usize, parts: &[&str]| parts.iter().all(|p| lines[i].contains(p));
    assert!(has(
        0,
        &["WARN", "circuit breaker opened", "from=closed", "to=open"]
    ));
    assert!(has(
        0,
        &[
            "reason=consecutive_failures",
            "key=\"api.example\"",
            "cooldown_ms=30000"
        ]
    ));
    assert!(has(1, &["INFO", "to=half_open", "reason=cooldown_elapsed"]));
    assert!(has(2, &["INFO", "to=closed", "reason=probes_succeeded"]));
    assert!(has(3, &["WARN", "to=forced_open", "reason=manual"]));
}
