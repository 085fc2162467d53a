//! Shared helpers for the criterion benches: a one-thread runtime (what the anchors used) and a
//! report that reads criterion's own estimates back and prints the overhead ratios.
#![allow(dead_code, unreachable_pub)]

use std::{path::PathBuf, time::Duration};

use criterion::Criterion;

pub mod helmet;

/// A criterion set to the anchors' settings: 0.5 s warm-up and 2 s measurement per bench.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// A current-thread tokio runtime, like the anchors' (`axum::serve` per connection).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn criterion_dir() -> PathBuf {
    if let Ok(home) = std::env::var("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("criterion")
}

/// The median time in ns of `group/bench` from criterion's last run, if there was one.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Prints, for each `(ours, theirs)` pair of `group`, both medians, both overheads over
/// `baseline` and the ratio of the overheads (ours / theirs) and of the totals.
pub fn report(group: &str, baseline: &str, pairs: &[(&str, &str)]) {
    let Some(base) = median_ns(group, baseline) else {
        println!("[ratio] {group}: no estimate for the baseline `{baseline}` (filtered out?)");
        return;
    };
    for (ours, theirs) in pairs {
        match (median_ns(group, ours), median_ns(group, theirs)) {
            (Some(o), Some(t)) => {
                let (oo, to) = (o - base, t - base);
                println!(
                    "[ratio] {group}: {ours} {o:.0} ns (+{oo:.0}) vs {theirs} {t:.0} ns (+{to:.0}) \
                     over {baseline} {base:.0} ns -> overhead ratio {:.3}, total ratio {:.3}",
                    oo / to,
                    o / t
                );
            }
            _ => println!("[ratio] {group}: {ours} or {theirs} has no estimate (filtered out?)"),
        }
    }
}

/// `BATTLEMENT_PROFILE=<bench>[:<iterations>]` (e.g. `battlement:20000`): the number of
/// iterations to run `bench` alone, without criterion, so that `valgrind --tool=callgrind`
/// counts its instructions (the difference of two runs with different counts, divided by the
/// difference of the counts, is the cost of one iteration). `None` when unset or another bench.
pub fn profile_iterations(bench: &str) -> Option<u64> {
    let spec = std::env::var("BATTLEMENT_PROFILE").ok()?;
    let (name, n) = spec.split_once(':').unwrap_or((&spec, "100000"));
    (name == bench).then(|| n.parse().expect("BATTLEMENT_PROFILE iterations"))
}

/// Whether a profile run was asked for (then criterion is skipped).
pub fn profiling() -> bool {
    std::env::var_os("BATTLEMENT_PROFILE").is_some()
}
