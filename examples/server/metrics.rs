//! Feature `metrics`: a Prometheus recorder for the crate's counters and histograms, rendered
//! on `/metrics` of a separate listener (`BATTLEMENT_METRICS_ADDR`, default `127.0.0.1:9464`),
//! never on the public port.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, http::header, routing::get};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Installs the global recorder and serves `/metrics` on `addr`.
///
/// # Errors
///
/// When a recorder is installed already or `addr` cannot be bound.
pub(crate) async fn serve(addr: SocketAddr) -> Result<(), String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    // Histograms are summarised on upkeep: keep it running between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    println!("metrics: Prometheus on http://{addr}/metrics (not on the public port)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    Ok(())
}
