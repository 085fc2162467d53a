//! Slow clients against the example server's serving code (`examples/server/serve.rs`, the
//! `[server]` section): idle connections, half-sent heads and trickled bytes are closed by the
//! header-read and idle timeouts; clients that keep working, slow answers and long response
//! bodies are not cut.
//!
//! Real loopback sockets and real time, with short timeouts (header read 1 s, idle 2 s): the
//! behaviour under test is hyper's timers and the kernel's sockets together, and tokio's
//! paused clock would advance past a timer while a loopback write is still on its way (its
//! auto-advance does not wait for I/O). So the bounds are generous above (a loaded machine is
//! late) and tight below (a timer never fires early). Every wait is bounded.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/server/serve.rs"]
mod serve;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    routing::get,
};
use battlement::{
    ConfigErrorKind, Stack,
    config::HumanDuration,
    stack::{ConnectionConfig, ServerConfig},
};
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

/// Slack above a timeout for a loaded machine (2 cores, other builds running).
const LATE: Duration = Duration::from_millis(1500);
/// How early a deadline may look from the client's side (the server's clock started a
/// little before the client's, at accept).
const EARLY: Duration = Duration::from_millis(100);
/// The longest any test waits for a connection to close.
const WAIT: Duration = Duration::from_secs(8);

fn timeouts(toml: &str) -> serve::Timeouts {
    let config = ServerConfig::from_toml_str(toml).unwrap();
    serve::Timeouts::new(&config.server).unwrap()
}

/// Header read 1 s, idle 2 s.
fn short() -> serve::Timeouts {
    timeouts("[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"")
}

/// The routes: `/` answers at once, `/slow` after 3 s (more than the idle timeout), `/stream`
/// sends its body over 3 s. The whole stack around them, as the example serves it.
fn app() -> Router {
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow"
            }),
        )
        .route(
            "/stream",
            get(|| async { Body::new(Trickle::new(6, Duration::from_millis(500))) }),
        );
    Stack::from_config(&ServerConfig::default())
        .unwrap()
        .wrap(router)
}

/// A response body of `left` one-byte chunks, `every` apart.
struct Trickle {
    left: u32,
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(left: u32, every: Duration) -> Self {
        Self {
            left,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }
}

/// Serves `app()` with `timeouts` on a free loopback port; the address, and a sender that
/// starts the graceful shutdown (the server task ends when it is done).
async fn start(timeouts: serve::Timeouts) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve::serve(listener, app(), timeouts, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection (end of stream or reset): how long that
/// took from `since`, and what was read. Panics after [`WAIT`].
async fn closed(stream: &mut TcpStream, since: Instant) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = WAIT.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {:?} (read: {:?})",
                since.elapsed(),
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (since.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_between(what: &str, took: Duration, at_least: Duration, at_most: Duration) {
    assert!(
        took + EARLY >= at_least && took <= at_most,
        "{what}: closed after {took:?}, expected between {at_least:?} and {at_most:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (addr, _stop) = start(short()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    let (took, got) = closed(&mut stream, since).await;
    // Nothing sent: the protocol is not known yet, hyper's header timer has not started; the
    // idle rule closes it.
    assert_between(
        "silent",
        took,
        Duration::from_secs(2),
        Duration::from_secs(2) + LATE,
    );
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_half_sent_head_is_closed_after_the_header_read_timeout() {
    let (addr, _stop) = start(short()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let (took, got) = closed(&mut stream, since).await;
    assert_between(
        "half head",
        took,
        Duration::from_secs(1),
        Duration::from_secs(1) + LATE,
    );
    // hyper closes without an answer (no 408); nothing of the request reached the app.
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_trickled_head_is_closed_by_the_header_read_timeout() {
    // Idle 10 s: only the header-read timeout can close it in time.
    let (addr, _stop) = start(timeouts(
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"10s\"",
    ))
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_at = None;
    // One byte every 300 ms: the whole head would take 20 s; bounded by `WAIT`.
    for byte in head.iter() {
        if since.elapsed() > WAIT {
            break;
        }
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            closed_at = Some(since.elapsed());
            break;
        }
        // A closed connection shows as a read of 0 (or a reset) before the next write fails.
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(since.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        }
    }
    let took = closed_at.expect("the trickle was never cut");
    assert_between(
        "trickle",
        took,
        Duration::from_secs(1),
        Duration::from_secs(1) + LATE,
    );
}

#[tokio::test]
async fn a_trickled_http2_preface_is_closed_by_the_idle_timeout() {
    // Before 24 bytes of preface the protocol is unknown, and no hyper timer runs: the idle
    // rule must close it. Header read 10 s, so only the idle timeout (2 s) can.
    let (addr, _stop) = start(timeouts(
        "[server]\nheader_read_timeout = \"10s\"\nidle_timeout = \"2s\"",
    ))
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    let mut closed_at = None;
    for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter() {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            closed_at = Some(since.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(since.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        }
    }
    let took = closed_at.expect("the preface trickle was never cut");
    assert_between(
        "preface",
        took,
        Duration::from_secs(2),
        Duration::from_secs(2) + LATE,
    );
}

/// An HTTP/1.1 client on one connection, and the task driving it (it ends when the server
/// closes the connection).
async fn h1_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driver)
}

fn get_req(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

/// Sends `GET path` and reads the whole answer: status and body.
async fn fetch<B>(send: &mut B, path: &str) -> (u16, Bytes)
where
    B: Sender,
{
    let res = tokio::time::timeout(WAIT, send.send(get_req(path)))
        .await
        .expect("answered in time")
        .expect("answered");
    let status = res.status().as_u16();
    let body = tokio::time::timeout(WAIT, res.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, body)
}

/// The two hyper client senders.
trait Sender {
    fn send(
        &mut self,
        req: hyper::Request<Empty<Bytes>>,
    ) -> impl Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>;
}

impl Sender for hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        req: hyper::Request<Empty<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        self.ready().await?;
        self.send_request(req).await
    }
}

impl Sender for hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        req: hyper::Request<Empty<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        self.ready().await?;
        self.send_request(req).await
    }
}

#[tokio::test]
async fn keep_alive_requests_back_to_back_are_not_cut() {
    let (addr, _stop) = start(short()).await;
    let (mut send, driver) = h1_client(addr).await;
    let since = Instant::now();
    // Four seconds of requests 200 ms apart on one connection: twice the idle timeout, four
    // times the header-read timeout.
    let mut n = 0;
    let mut last_answer = Instant::now();
    while since.elapsed() < Duration::from_secs(4) && n < 40 {
        let (status, body) = fetch(&mut send, "/").await;
        last_answer = Instant::now();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]), "request {n}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(n >= 10, "{n} requests");
    assert!(!driver.is_finished(), "the connection was closed");
    // Then, left alone, it is closed: after the header-read timeout (hyper's HTTP/1.1 timer
    // also runs between keep-alive requests), well before the idle one.
    tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
    assert_between(
        "keep-alive idle",
        last_answer.elapsed(),
        Duration::from_secs(1),
        Duration::from_secs(1) + LATE,
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // Idle shorter than the header-read timeout: the idle rule closes an HTTP/1.1 connection
    // between requests, counted from the end of the last response.
    let (addr, _stop) = start(timeouts(
        "[server]\nheader_read_timeout = \"10s\"\nidle_timeout = \"1s\"",
    ))
    .await;
    let (mut send, driver) = h1_client(addr).await;
    // Three requests 400 ms apart: each gap is shorter than the idle timeout.
    let mut idle_from = Instant::now();
    for _ in 0..3 {
        assert_eq!(fetch(&mut send, "/").await.0, 200);
        idle_from = Instant::now();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(!driver.is_finished(), "closed while in use");
    tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
    assert_between(
        "idle",
        idle_from.elapsed(),
        Duration::from_secs(1),
        Duration::from_secs(1) + LATE,
    );
}

#[tokio::test]
async fn a_slow_answer_and_a_long_body_are_not_cut_by_the_idle_timeout() {
    let (addr, _stop) = start(short()).await;
    let (mut send, driver) = h1_client(addr).await;
    // 3 s to answer, more than the idle timeout (2 s): the request is in flight.
    let (status, body) = fetch(&mut send, "/slow").await;
    assert_eq!((status, &body[..]), (200, &b"slow"[..]));
    // A body sent over 3 s: in flight until its last byte.
    let (status, body) = fetch(&mut send, "/stream").await;
    assert_eq!((status, &body[..]), (200, &b"xxxxxx"[..]));
    assert!(!driver.is_finished());
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_even_while_the_client_pings() {
    let (addr, _stop) = start(short()).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        // Pings every 300 ms, idle or not: bytes, not requests.
        .keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    // A stream in flight for longer than the idle timeout is not cut, nor are two at once.
    let mut other = send.clone();
    let slow = tokio::spawn(async move { fetch(&mut other, "/slow").await });
    let (status, body) = fetch(&mut send, "/stream").await;
    assert_eq!((status, &body[..]), (200, &b"xxxxxx"[..]));
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"slow"[..]));
    let idle_from = Instant::now();
    tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
    assert_between(
        "h2 idle",
        idle_from.elapsed(),
        Duration::from_secs(2),
        Duration::from_secs(2) + LATE,
    );
    assert!(send.is_closed());
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_refuses_new_connections() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve(listener, app(), short(), async {
        let _ = stopped.await;
    }));
    let (mut send, _driver) = h1_client(addr).await;
    let slow = tokio::spawn(async move { fetch(&mut send, "/slow").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"slow"[..]));
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[test]
fn the_server_section_defaults_on_and_refuses_zero() {
    let config = ServerConfig::default();
    assert_eq!(
        config.server.header_read_timeout.get(),
        Duration::from_secs(10)
    );
    assert_eq!(config.server.idle_timeout.get(), Duration::from_secs(60));
    for field in ["header_read_timeout", "idle_timeout"] {
        let err = ServerConfig::from_toml_str(&format!("[server]\n{field} = \"0s\""))
            .expect_err("zero refused");
        assert_eq!(err.field(), format!("server.{field}"));
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        // The same through the environment.
        let err = ServerConfig::from_toml_with_env(
            "",
            [(
                format!("BATTLEMENT__SERVER__{}", field.to_uppercase()),
                "0ms".to_owned(),
            )],
        )
        .expect_err("zero refused");
        assert_eq!(err.field(), format!("server.{field}"));
    }
    let err = ServerConfig::from_toml_str("[server]\nread_timeout = \"5s\"").unwrap_err();
    assert_eq!(err.field(), "server.read_timeout");
    // Made in code: `validate` (which the example's `Timeouts::new` calls) names the field.
    let mut section = ConnectionConfig::default();
    section.idle_timeout = HumanDuration::from_secs(0);
    let err = serve::Timeouts::new(&section).unwrap_err();
    assert_eq!(err.field(), "server.idle_timeout");
    assert_eq!(err.kind(), ConfigErrorKind::OutOfRange);
    section.idle_timeout = HumanDuration::from_secs(1);
    section.header_read_timeout = HumanDuration::from_millis(0);
    assert_eq!(
        section.validate().unwrap_err().field(),
        "server.header_read_timeout"
    );
}
