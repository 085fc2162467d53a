//! Feature `metrics`: a Prometheus recorder for the crate's counters and histograms, rendered
//! on `/metrics` of a separate listener (`BATTLEMENT_METRICS_ADDR`, default `127.0.0.1:9464`),
//! never on the public port.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, http::header, routing::get};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Installs the global recorder and serves `/metrics` on `addr` (port 0: a free port, printed).
///
/// # Errors
///
/// When a recorder is installed already or `addr` cannot be bound.
pub(crate) async fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = bind(addr).await?;
    let addr = listener.local_addr().unwrap_or(addr);
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
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

/// The metrics listener; when `addr` is taken (a second instance of the example, most often),
/// the error says which address to set.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "cannot listen on {addr} for metrics: {e}; set BATTLEMENT_METRICS_ADDR (or \
             --metrics-addr) to a free address, e.g. BATTLEMENT_METRICS_ADDR=127.0.0.1:0 for any \
             free port"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_address_names_the_setting_to_change() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("BATTLEMENT_METRICS_ADDR"), "{err}");
        assert!(err.contains("--metrics-addr"), "{err}");
        // Port 0 binds a free port.
        let any = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(any.local_addr().unwrap().port(), 0);
    }
}
