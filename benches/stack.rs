//! Criterion bench of the full server stack (placeholder).
fn main() {}
