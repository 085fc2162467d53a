//! The `tracing` events of `request_id`, in a process of their own: the test installs the
//! global subscriber.

use std::{
    io,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Body, http::Request, routing::get};
use battlement::request_id::SetRequestIdLayer;
use tower::ServiceExt;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn events_are_in_the_request_span_and_bad_ids_are_not_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The global subscriber, in a process of its own: tracing's global level hint is shared by
    // every thread, and a scoped subscriber raced with the other tests of a bigger binary.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let id = {
        rt.block_on(async {
            let app = Router::new()
                .route(
                    "/",
                    get(|| async {
                        tracing::info!("in the handler");
                        "ok"
                    }),
                )
                .layer(SetRequestIdLayer::new());
            let req = Request::builder()
                .header("x-request-id", "evil\"value")
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            res.headers()["x-request-id"].to_str().unwrap().to_owned()
        })
    };
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&format!("request{{request_id={id}}}")) && logs.contains("in the handler"),
        "{logs}"
    );
    assert!(logs.contains("rejected an incoming request id"), "{logs}");
    assert!(
        logs.contains(&format!(
            "len=10 reason=\"refused by the validator\" request_id={id}"
        )),
        "{logs}"
    );
    assert!(!logs.contains("evil"), "{logs}");
}
