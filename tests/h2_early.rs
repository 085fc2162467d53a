//! HTTP/2 early refusals, over real h2 connections on loopback: hyper's HTTP/2 server with the
//! layers around an axum router; as client the `h2` crate, or raw frames where the test needs
//! frames in flight that a client library would not send (DATA that reaches the server after
//! its answer).
//!
//! What hyper 1.12 / h2 0.4.20 do with a refusal answered while the body is still coming: the
//! answer goes out in full, then `RST_STREAM(NO_ERROR)` (RFC 9113 §8.1). Some clients take that
//! reset as a failure (curl 7.88: exit 92); DATA the client had in flight reaches a reset
//! stream, and once h2 forgets that stream (after 50 more resets or a second) each such frame
//! costs a `RST_STREAM(STREAM_CLOSED)` counted against the connection's 1,024 locally caused
//! resets, past which the connection ends with `GOAWAY(ENHANCE_YOUR_CALM)`. The layers now
//! read a small body to its end before they refuse (`src/drain.rs`): no reset at all.

#[path = "support/slow_store.rs"]
mod slow_store;
use slow_store::SlowStore;

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo, routing};
use battlement::{
    Stack as ServerStack,
    auth::api_key::{ApiKeyLayer, ApiKeys, Principal, PrincipalId, hash_key},
    body_limit::BodyLimitLayer,
    net::TrustedProxies,
    rate_limit::{ClientIp, GlobalKey, Limit, MemoryStore, Quota, RateLimitLayer},
    signing::{Key, KeyRing, VerifySignatureLayer},
};
use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tower::ServiceExt;

const KEY: &str = "h2-early-test-key-0123456789abcdef";

/// The bytes the layers read from the request bodies of one server.
type Read = Arc<AtomicU64>;

pin_project_lite::pin_project! {
    /// The request body, counting the data bytes read out of it.
    struct Counting {
        #[pin]
        inner: Incoming,
        read: Read,
    }
}

impl Body for Counting {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` over HTTP/2 (prior knowledge, hyper's defaults) on a free loopback port, with
/// the client's address as `ConnectInfo`; the address and the bytes read from bodies.
async fn serve(app: Router) -> (SocketAddr, Read) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let read = Read::default();
    let counted = read.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let (app, read) = (app.clone(), counted.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let mut req = req.map(|inner| Counting {
                        inner,
                        read: read.clone(),
                    });
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(req)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, read)
}

/// The handler: reads the body, answers `ok`.
fn router() -> Router {
    Router::new().route(
        "/",
        routing::post(|body: Bytes| async move { format!("ok {}", body.len()) }),
    )
}

fn api_key_app() -> Router {
    let principal = Principal::new(PrincipalId::new("h2").unwrap());
    let keys = ApiKeys::builder()
        .key(hash_key(KEY), &principal)
        .build()
        .unwrap();
    router().layer(ApiKeyLayer::new(keys).header("x-api-key").unwrap())
}

fn one_request_per_hour() -> Quota {
    Quota::per_hour(std::num::NonZeroU32::MIN).with_burst(std::num::NonZeroU32::MIN)
}

/// The rate limit alone, one request an hour for everyone.
fn rate_limit_app() -> Router {
    router().layer(RateLimitLayer::new(Limit::new(
        GlobalKey,
        one_request_per_hour(),
    )))
}

/// The default stack (fused: request id, trace, panic, security headers, body limit of 1,000
/// bytes, rate limit per address), here one request an hour.
fn stack_app(per_ip: Option<Quota>) -> Router {
    let mut stack = ServerStack::new().body_limit(BodyLimitLayer::new(1000));
    if let Some(q) = per_ip {
        stack = stack.rate_limit_ip(RateLimitLayer::new(Limit::new(
            ClientIp::new(TrustedProxies::none()),
            q,
        )));
    }
    stack.wrap(router())
}

fn verify_app() -> Router {
    let key = Key::hmac_sha256("h2", &[7; 32]).unwrap();
    router().layer(VerifySignatureLayer::new(KeyRing::new(key)))
}

async fn client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
    /// The answer came before the client had sent its body.
    before_body: bool,
    /// The server reset the stream (the reason), seen within 200 ms of the answer's end.
    reset: Option<h2::Reason>,
}

/// POSTs `len` bytes (with `content-length` unless `chunked`) on a new stream: the headers at
/// once, the body `after` later (a client whose body is still on the way), unless the answer
/// came first. Bounded: 10 s in all.
async fn post(
    client: &h2::client::SendRequest<Bytes>,
    headers: &[(&str, &str)],
    len: usize,
    chunked: bool,
    after: Duration,
) -> Answer {
    timeout(Duration::from_secs(10), async {
        let mut client = client.clone().ready().await.unwrap();
        let mut req = Request::post("http://127.0.0.1/");
        if !chunked {
            req = req.header("content-length", len);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let (response, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
        let mut response = std::pin::pin!(response);
        let early = timeout(after, &mut response).await.ok();
        let before_body = early.is_some();
        if !before_body {
            send.reserve_capacity(len);
            // Refused by a reset in the meantime: the answer (or its absence) says the rest.
            let _ = send.send_data(Bytes::from(vec![b'a'; len]), true);
        }
        let res = match early {
            Some(res) => res,
            None => response.await,
        }
        .expect("the answer, not a stream error");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut body = res.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the answer's body, not a stream error");
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let reset = timeout(
            Duration::from_millis(200),
            std::future::poll_fn(|cx| send.poll_reset(cx)),
        )
        .await
        .ok()
        .map(|r| r.unwrap());
        Answer {
            status,
            content_type,
            body: String::from_utf8(bytes).unwrap(),
            before_body,
            reset,
        }
    })
    .await
    .expect("answered within 10 s")
}

/// A refusal with its status and problem body, after the client's body and without a reset.
#[track_caller]
fn assert_refused(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.content_type, "application/problem+json",
        "{answer:?}"
    );
    let problem: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(problem["status"], status.as_u16(), "{answer:?}");
    assert!(
        !answer.before_body,
        "answered before the body was read: {answer:?}"
    );
    assert_eq!(answer.reset, None, "the stream was reset: {answer:?}");
}

const LATE: Duration = Duration::from_millis(100);

#[tokio::test]
async fn an_api_key_refusal_reads_a_small_body_then_answers_401() {
    let (addr, read) = serve(api_key_app()).await;
    let c = client(addr).await;
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::UNAUTHORIZED);
    assert_eq!(read.load(Ordering::Relaxed), 4000);
    // Without a declared length too.
    let answer = post(&c, &[], 4000, true, LATE).await;
    assert_refused(&answer, StatusCode::UNAUTHORIZED);
    // And the key still works on the same connection.
    let ok = post(&c, &[("x-api-key", KEY)], 10, false, Duration::ZERO).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "ok 10"));
}

#[tokio::test]
async fn a_rate_limit_refusal_reads_a_small_body_then_answers_429() {
    let (addr, _) = serve(rate_limit_app()).await;
    let c = client(addr).await;
    let first = post(&c, &[], 10, false, Duration::ZERO).await;
    assert_eq!(first.status, StatusCode::OK);
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_default_stack_reads_a_small_body_then_answers_429() {
    let (addr, _) = serve(stack_app(Some(one_request_per_hour()))).await;
    let c = client(addr).await;
    assert_eq!(
        post(&c, &[], 10, false, Duration::ZERO).await.status,
        StatusCode::OK
    );
    let answer = post(&c, &[], 500, false, LATE).await;
    assert_refused(&answer, StatusCode::TOO_MANY_REQUESTS);
}

/// A limit of 1,000 bytes, 4,000 declared.
async fn check_413_reads_a_small_body_first(app: Router) {
    let (addr, read) = serve(app).await;
    let c = client(addr).await;
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(read.load(Ordering::Relaxed), 4000, "read and thrown away");
}

#[tokio::test]
async fn a_413_by_content_length_reads_a_small_body_first() {
    check_413_reads_a_small_body_first(router().layer(BodyLimitLayer::new(1000))).await;
}

#[tokio::test]
async fn the_default_stack_reads_a_small_body_then_answers_413() {
    check_413_reads_a_small_body_first(stack_app(None)).await;
}

#[tokio::test]
async fn a_missing_signature_reads_a_small_body_then_answers_401() {
    let (addr, _) = serve(verify_app()).await;
    let c = client(addr).await;
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_2_mb_upload_gets_its_413_without_being_read() {
    // Declared over the drain's cap: answered at once, nothing read; the client sees the 413
    // (the reset that follows, NO_ERROR, stops the upload).
    let (addr, read) = serve(stack_app(None)).await;
    let c = client(addr).await;
    let answer = post(&c, &[], 2_000_000, false, Duration::ZERO).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    let problem: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(problem["status"], 413);
    assert_eq!(read.load(Ordering::Relaxed), 0);
    // The connection still serves.
    assert_eq!(
        post(&c, &[], 10, false, Duration::ZERO).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_undeclared_2_mb_upload_is_read_only_up_to_the_cap() {
    // No length declared: the refusal reads at most 64 KiB (and one frame), throws it away,
    // then answers; the client still sees the 401.
    let (addr, read) = serve(api_key_app()).await;
    let c = client(addr).await;
    let answer = post(&c, &[], 2_000_000, true, Duration::ZERO).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    let read = read.load(Ordering::Relaxed);
    assert!(read <= 64 * 1024 + 16 * 1024, "read {read} bytes");
}

#[tokio::test]
async fn a_missing_webhook_signature_reads_a_small_body_then_answers_401() {
    use battlement::signing::webhooks::{VerifyWebhookLayer, Webhook, WebhookSecret};
    let secret = WebhookSecret::from_whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let (addr, _) = serve(router().layer(VerifyWebhookLayer::new(Webhook::new(secret)))).await;
    let answer = post(&client(addr).await, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rate_limit_refusal_decided_by_a_store_doing_io_reads_a_small_body_first() {
    let layer = RateLimitLayer::new(Limit::new(GlobalKey, one_request_per_hour()))
        .with_store(SlowStore(MemoryStore::new()));
    let (addr, _) = serve(router().layer(layer)).await;
    let c = client(addr).await;
    assert_eq!(
        post(&c, &[], 10, false, Duration::ZERO).await.status,
        StatusCode::OK
    );
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_is_refused_at_once() {
    // It sends no body until told to: a final status at once is what it waits for; reading
    // the body would have it wait the drain's second (or make hyper send 100 Continue).
    let (addr, read) = serve(api_key_app()).await;
    let c = client(addr).await;
    let answer = post(
        &c,
        &[("expect", "100-continue")],
        4000,
        false,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.before_body, "answered at once: {answer:?}");
    assert_eq!(read.load(Ordering::Relaxed), 0);
}

#[cfg(feature = "redis")]
#[path = "redis_support/mod.rs"]
mod redis_support;

/// The default stack on a Redis store: its rate limit decides through I/O (the fused stack's
/// pending path).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_stack_on_redis_reads_a_small_body_then_answers_429() {
    let Some(redis) = redis_support::RedisServer::start() else {
        return;
    };
    let cfg = battlement::stack::ServerConfig::from_toml_str(&format!(
        r#"
        [rate_limit.per_ip]
        requests = 1
        per = "1h"
        burst = 1

        [rate_limit.redis]
        url = "{}"
        prefix = "h2-early"
        on_failure = "closed"
        "#,
        redis.url()
    ))
    .unwrap();
    let stack = ServerStack::from_config(&cfg).unwrap();
    assert!(stack.rate_limit_store().unwrap().is_shared());
    let (addr, _) = serve(stack.wrap(router())).await;
    let c = client(addr).await;
    assert_eq!(
        post(&c, &[], 10, false, Duration::ZERO).await.status,
        StatusCode::OK
    );
    let answer = post(&c, &[], 4000, false, LATE).await;
    assert_refused(&answer, StatusCode::TOO_MANY_REQUESTS);
}

// ===== raw frames =====

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.put_slice(payload);
}

/// A header block of literals without indexing (HPACK §6.2.2, no Huffman): no dynamic table.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        assert!(name.len() < 127 && value.len() < 127);
        out.push(0);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// An HTTP/2 client connection written frame by frame.
struct Raw {
    tcp: TcpStream,
    buf: BytesMut,
    next: u32,
    /// Streams the server ended (END_STREAM on its HEADERS or DATA).
    ended: std::collections::HashSet<u32>,
    /// DATA payloads per stream.
    data: std::collections::HashMap<u32, Vec<u8>>,
    resets: Vec<(u32, u32)>,
    /// The error code of the server's GOAWAY.
    goaway: Option<u32>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut out = BytesMut::new();
        out.put_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        // SETTINGS_INITIAL_WINDOW_SIZE = 1 MiB; the connection window raised to 1 GiB.
        frame(&mut out, SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]);
        frame(&mut out, WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
        tcp.write_all(&out).await.unwrap();
        Self {
            tcp,
            buf: BytesMut::new(),
            next: 1,
            ended: Default::default(),
            data: Default::default(),
            resets: Vec::new(),
            goaway: None,
        }
    }

    /// Opens a POST stream (headers only); its id.
    fn open(&mut self, out: &mut BytesMut, headers: &[(&str, &str)]) -> u32 {
        let id = self.next;
        self.next += 2;
        let mut all = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "127.0.0.1"),
        ];
        all.extend_from_slice(headers);
        frame(out, HEADERS, END_HEADERS, id, &header_block(&all));
        id
    }

    /// Writes `out`; on a closed connection, fails with what the server said before.
    async fn send(&mut self, out: &[u8], refused: usize) {
        if self.tcp.write_all(out).await.is_err() {
            self.read_until(Instant::now() + Duration::from_secs(1), |_| false)
                .await;
            panic!(
                "connection closed after {refused} refusals: GOAWAY {:?}, {} resets, the last {:?}",
                self.goaway,
                self.resets.len(),
                self.resets.last(),
            );
        }
    }

    /// Reads frames until `done(self)` or `until`; whether `done` became true.
    async fn read_until(&mut self, until: Instant, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            while self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() < 9 + len {
                    break;
                }
                let head = self.buf.split_to(9);
                let payload = self.buf.split_to(len);
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
                let mut out = BytesMut::new();
                match kind {
                    SETTINGS if flags & ACK == 0 => frame(&mut out, SETTINGS, ACK, 0, &[]),
                    PING if flags & ACK == 0 => frame(&mut out, PING, ACK, 0, &payload),
                    RST_STREAM => self
                        .resets
                        .push((stream, u32::from_be_bytes(payload[..4].try_into().unwrap()))),
                    GOAWAY => {
                        self.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
                    }
                    HEADERS | DATA => {
                        if kind == DATA {
                            self.data
                                .entry(stream)
                                .or_default()
                                .extend_from_slice(&payload);
                        }
                        if flags & END_STREAM != 0 {
                            self.ended.insert(stream);
                        }
                    }
                    _ => {}
                }
                if !out.is_empty() {
                    self.tcp.write_all(&out).await.unwrap();
                }
            }
            if done(self) || self.goaway.is_some() {
                return done(self);
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            let mut chunk = [0u8; 16 * 1024];
            match timeout(until - now, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return done(self),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return done(self),
            }
        }
    }
}

/// 2,100 refused POSTs (no API key, 10-byte bodies) on one connection, in batches of 150: the
/// headers of a batch, then (once the server answered, or after 100 ms) its bodies, as DATA
/// that a client had in flight. Then a good request on the same connection.
///
/// Before, each refusal answered at once and reset its stream; the DATA then reached streams
/// h2 no longer remembered (it keeps 50), each answered with `RST_STREAM(STREAM_CLOSED)` and
/// counted, and the connection died with `GOAWAY(ENHANCE_YOUR_CALM)` after 1,024.
#[tokio::test]
async fn one_connection_survives_2000_early_refusals() {
    let (addr, _) = serve(api_key_app()).await;
    let mut raw = Raw::connect(addr).await;
    let start = Instant::now();
    let mut refused = 0;
    for _ in 0..14 {
        let mut out = BytesMut::new();
        let ids: Vec<u32> = (0..150)
            .map(|_| raw.open(&mut out, &[("content-length", "10")]))
            .collect();
        raw.send(&out, refused).await;
        let all_ended = |r: &Raw| ids.iter().all(|id| r.ended.contains(id));
        raw.read_until(Instant::now() + Duration::from_millis(100), all_ended)
            .await;
        let mut out = BytesMut::new();
        for &id in &ids {
            frame(&mut out, DATA, END_STREAM, id, b"0123456789");
        }
        raw.send(&out, refused).await;
        let answered = raw
            .read_until(Instant::now() + Duration::from_secs(5), all_ended)
            .await;
        assert_eq!(raw.goaway, None, "GOAWAY after {refused} refusals");
        assert!(answered, "every refusal answered");
        for id in &ids {
            let problem: serde_json::Value = serde_json::from_slice(&raw.data[id]).unwrap();
            assert_eq!(problem["status"], 401);
        }
        refused += ids.len();
    }
    assert!(refused >= 2000);
    assert_eq!(raw.resets, [], "no stream was reset");
    // Still open, and still answering.
    let mut out = BytesMut::new();
    let id = raw.open(&mut out, &[("x-api-key", KEY), ("content-length", "2")]);
    frame(&mut out, DATA, END_STREAM, id, b"hi");
    raw.send(&out, refused).await;
    let answered = raw
        .read_until(Instant::now() + Duration::from_secs(5), |r| {
            r.ended.contains(&id)
        })
        .await;
    assert!(answered && raw.goaway.is_none(), "goaway {:?}", raw.goaway);
    assert_eq!(raw.data[&id], b"ok 2");
    assert!(start.elapsed() < Duration::from_secs(30));
}
