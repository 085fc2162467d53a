//! The span, audit events, redaction and metrics of `stack`, in a process of their own: the
//! test installs the global subscriber (and, with feature `metrics`, the global recorder).

use std::net::SocketAddr;

use axum::{Extension, Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    auth::api_key::{Principal, hash_key},
    stack::{ServerConfig, ServerStack},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

#[path = "support/log_buf.rs"]
mod log_buf;
use log_buf::Buf;

#[cfg(feature = "metrics")]
mod recorder {
    use std::{
        collections::HashMap,
        sync::{
            Arc, Mutex,
            atomic::{AtomicU64, Ordering},
        },
    };

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    #[derive(Default)]
    pub(crate) struct Count(AtomicU64);

    impl CounterFn for Count {
        fn increment(&self, n: u64) {
            self.0.fetch_add(n, Ordering::SeqCst);
        }
        fn absolute(&self, n: u64) {
            self.0.store(n, Ordering::SeqCst);
        }
    }

    impl HistogramFn for Count {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every counter and histogram by its key rendered as `name{label=value,...}`.
    #[derive(Clone, Default)]
    pub(crate) struct Rec(pub(crate) Arc<Mutex<HashMap<String, Arc<Count>>>>);

    impl Rec {
        fn slot(&self, key: &Key) -> Arc<Count> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            self.0.lock().unwrap().entry(name).or_default().clone()
        }

        pub(crate) fn get(&self, name: &str) -> u64 {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |c| c.0.load(Ordering::SeqCst))
        }
    }

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.slot(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.slot(key))
        }
    }
}

fn req(uri: &str, key: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri).header("cookie", "session=c00k1e-v4lue");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    let mut r = b.body(Body::empty()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 44], 5000))));
    r
}

#[tokio::test]
async fn span_fields_audit_events_redaction_and_metrics() {
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    #[cfg(feature = "metrics")]
    let rec = {
        let rec = recorder::Rec::default();
        metrics::set_global_recorder(rec.clone()).unwrap();
        rec
    };

    let hash = hash_key("k-alice-1").to_hex();
    let cfg = ServerConfig::from_toml_str(&format!(
        r#"
        [trace]
        log_headers = true
        [api_key]
        header = "x-api-key"
        [[api_key.principals]]
        id = "alice"
        keys = ["{hash}"]
        "#
    ))
    .unwrap();
    let app = ServerStack::from_config(&cfg)
        .unwrap()
        .wrap(Router::new().route(
            "/me",
            get(|Extension(p): Extension<Principal>| async move { p.id().to_string() }),
        ));

    let res = app
        .clone()
        .oneshot(req("/me", Some("k-alice-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    #[cfg(feature = "metrics")]
    let app2 = app.clone();
    let res = app.oneshot(req("/me", Some("wrong-key"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    // The span has the request id, the client address and, once authenticated, the principal.
    let ok_line = out
        .lines()
        .find(|l| l.contains(&id) && l.contains("status=200"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(ok_line.contains("client=192.0.2.44"), "{ok_line}");
    assert!(
        ok_line.contains("principal=\"alice\"") || ok_line.contains("principal=alice"),
        "{ok_line}"
    );
    // A rejection is an audit event with its reason.
    assert!(
        out.lines().any(|l| l.contains("battlement::audit")
            && l.contains("request rejected")
            && l.contains("reason=\"api_key\"")),
        "{out}"
    );
    // Headers are logged with credentials redacted.
    assert!(out.contains("request headers"), "{out}");
    assert!(
        !out.contains("c00k1e") && !out.contains("k-alice-1") && !out.contains("wrong-key"),
        "{out}"
    );

    #[cfg(feature = "metrics")]
    {
        assert_eq!(
            rec.get("battlement_requests_total{method=GET,route=/me,status=200}"),
            1
        );
        assert_eq!(
            rec.get("battlement_requests_total{method=GET,route=/me,status=401}"),
            1
        );
        assert_eq!(rec.get("battlement_rejections_total{reason=api_key}"), 1);
        assert_eq!(
            rec.get("battlement_request_duration_seconds{method=GET,route=/me}"),
            2
        );
        // The label set stays bounded whatever clients send: unknown methods and paths that
        // match no route are one series each.
        let odd = Request::builder()
            .method("BREW")
            .uri("/no/such/path/4711")
            .header("x-api-key", "k-alice-1")
            .body(Body::empty())
            .unwrap();
        let mut odd = odd;
        odd.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 44], 5000))));
        let res = app2.oneshot(odd).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            rec.get("battlement_requests_total{method=other,route=unmatched,status=404}"),
            1
        );
    }
}
