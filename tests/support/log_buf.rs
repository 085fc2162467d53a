//! A writer that keeps what a tracing subscriber writes, for the tests that read their logs.

use std::sync::{Arc, Mutex};

/// Clones share one buffer: hand a clone to the subscriber, read the original.
#[derive(Clone, Default)]
pub(crate) struct Buf(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
