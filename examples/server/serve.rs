//! Serving with connection timeouts (`[server]` in the configuration): hyper-util's
//! HTTP/1.1 + HTTP/2 server with a header-read timeout and an idle timeout, so that a slow
//! client cannot hold a connection forever. `axum::serve` sets neither, and the stack's own
//! timeout starts only once a request head has been read.
//!
//! - **Header read** (`header_read_timeout`): hyper's HTTP/1.1 timer. In hyper 1.x it starts
//!   when the connection begins waiting for a head (after the protocol is known, and again at
//!   the end of each response) and is not reset by bytes that arrive: a head sent halfway, or
//!   one byte every few seconds, is closed when it runs out (hyper closes without a 408). It
//!   also bounds the wait between HTTP/1.1 keep-alive requests.
//! - **Idle** (`idle_timeout`): ours, for both protocols. A connection with no request in
//!   flight for that long is shut down gracefully (HTTP/1.1: closed; HTTP/2: `GOAWAY`), and
//!   dropped if the shutdown does not finish within the header-read timeout. A request is in
//!   flight from the service call until hyper drops its response body. Bytes alone (HTTP/2
//!   pings, window updates, the first bytes of a head, a trickled HTTP/2 preface before the
//!   protocol is known) do not make a connection busy.
//! - HTTP/2 also pings a client it has not heard from for `idle_timeout`, and closes the
//!   connection when the ping is not answered within `header_read_timeout` (a peer that went
//!   away mid-stream).
//!
//! Cost per request (the stack's benchmarks do not include it; `axum::serve` has none of it):
//! an `Arc` clone and drop, two atomic counter updates, one atomic maximum and a clock read when
//! a response ends, and a body wrapper that forwards every call; no allocation, no lock. Per
//! connection: one `Arc` and one timer.

use std::{
    error::Error as StdError,
    future::Future,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Extension, Router, extract::ConnectInfo};
use battlement::stack::ConnectionConfig;
use hyper::{
    Request, Response,
    body::{Body, Frame, Incoming, SizeHint},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::watch, time::Instant};
use tower::Layer;

/// What hyper's connections return.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// How long Ctrl-C waits for the connections in flight to finish before the process exits.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The connection timeouts, read from `[server]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

impl Timeouts {
    /// The timeouts of a (validated) `[server]` section.
    pub(crate) fn new(config: &ConnectionConfig) -> Result<Self, battlement::ConfigError> {
        config.validate()?;
        Ok(Self {
            header_read: config.header_read_timeout.get(),
            idle: config.idle_timeout.get(),
        })
    }
}

/// hyper-util's HTTP/1.1 + HTTP/2 server builder with the timeouts set.
pub(crate) fn builder(timeouts: Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.idle)
        .keep_alive_timeout(timeouts.header_read);
    builder
}

/// Accepts connections until `shutdown` resolves, each served on its own task with the peer
/// address in the request extensions (what `into_make_service_with_connect_info::<SocketAddr>`
/// does). Then every connection is shut down gracefully, and this returns once they are all
/// closed or after [`SHUTDOWN_GRACE`].
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder(timeouts));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let builder = Arc::clone(&builder);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                // An error means the server is gone: stop as well.
                let _ = stop.changed().await;
            };
            let served =
                serve_connection(&builder, TokioIo::new(tcp), service, timeouts, stop).await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Every connection task holds a receiver: `closed` resolves when the last one is done.
    let _ = stop_tx.send(());
    drop(stop_rx);
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open at exit");
    }
}

/// Serves one connection with `builder` (made by [`builder`] from the same `timeouts`) and
/// the idle rule: shut down gracefully once no request has been in flight for
/// `timeouts.idle`, or when `stop` resolves (then the requests in flight finish first).
pub(crate) async fn serve_connection<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    timeouts: Timeouts,
    stop: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new());
    let service = Track {
        inner: service,
        activity: Arc::clone(&activity),
    };
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    tokio::select! {
        served = conn.as_mut() => return served,
        () = activity.idle_for(timeouts.idle) => {
            conn.as_mut().graceful_shutdown();
            // Idle: nothing to wait for but the peer (an HTTP/2 client that does not answer
            // the shutdown's ping, a head hyper's own timer is about to close).
            return match tokio::time::timeout(timeouts.header_read, conn).await {
                Ok(served) => served,
                Err(_) => Ok(()),
            };
        }
        () = stop => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// What one connection is doing: requests in flight, and since when none has been.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `origin` to the end of the last request (0: none yet).
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Resolves once no request has been in flight for `idle`.
    ///
    /// Wakes at most once per `idle` while requests are in flight, and never per request.
    async fn idle_for(&self, idle: Duration) {
        let mut deadline = self.origin + idle;
        loop {
            tokio::time::sleep_until(deadline).await;
            // Read in this order: a request that ends between the two reads has moved
            // `idle_since` forward before `in_flight` reached 0 (see `InFlight::drop`). One
            // that starts between them is not seen; the shutdown is graceful, so it is
            // answered all the same.
            if self.in_flight.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + idle;
                continue;
            }
            let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
            let end = self.origin + since + idle;
            if Instant::now() >= end {
                return;
            }
            deadline = end;
        }
    }
}

/// A request in flight, until dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.origin.elapsed();
        // Saturates past 584 years.
        let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.0.idle_since.fetch_max(nanos, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service of one connection: counts its requests in flight.
#[derive(Debug)]
struct Track<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Track<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(&self.activity);
        TrackFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: hands its guard to the response body.
    struct TrackFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        // An error drops the guard here: the request is over.
        let guard = this.guard.take();
        Poll::Ready(res.map(|res| {
            res.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until hyper drops it.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
