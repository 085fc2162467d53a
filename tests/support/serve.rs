//! Serves an axum `Router` on a loopback port for the tests that need a real socket.

use std::net::SocketAddr;

use axum::Router;

/// Serves `app` on a free loopback port, with `ConnectInfo<SocketAddr>` as `axum::serve` gives
/// it, in a background task; the address to connect to.
#[allow(dead_code)] // a test that binds elsewhere uses `serve_on` alone
pub(crate) async fn serve(app: Router) -> SocketAddr {
    serve_on("127.0.0.1:0", app).await
}

/// [`serve`] on `bind` (`"[::1]:0"`, ...).
pub(crate) async fn serve_on(bind: &str, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}
