//! A resilient HTTP client: request-id forwarding, jittered retries with a budget, a circuit
//! breaker and a per-attempt timeout around hyper-util's client, driven against a
//! fault-injecting upstream on loopback.
//!
//! ```sh
//! cargo run --example client
//! ```
//!
//! Part 1: the upstream answers normally, then with 500s, then drops connections, then answers
//! too slowly, then recovers. The breaker goes closed → open → half-open → open → half-open →
//! open → half-open → closed; the example prints every transition and every call.
//!
//! Part 2: signed calls (RFC 9421 `hmac-sha256`, `Content-Digest`, a fresh nonce per attempt)
//! to `/signed/orders` and `/signed/status`, and an API-key call to `/keyed/me`. By default they
//! go to a verifying server started in this process with a key made for the run; set
//! `BATTLEMENT_SERVER=http://127.0.0.1:3000` (with `BATTLEMENT_SIGNING_KEY_ID`,
//! `BATTLEMENT_SIGNING_SECRET` and optionally `BATTLEMENT_API_KEY`) to call
//! `cargo run --example server` instead: that server prints the whole command. The client says
//! which server it calls.
//!
//! The example exits non-zero when the transitions or the answers are not the expected ones
//! (CI runs it).

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Extension, Router,
    extract::State as AxumState,
    http::StatusCode,
    routing::{get, post},
};
use battlement::{
    auth::api_key::{ApiKeyLayer, ApiKeys, KeyHash, Principal, PrincipalId, generate_key},
    circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, CircuitOpen, State},
    request_id::{ForwardRequestIdLayer, RequestId, SetRequestIdLayer},
    retry::{ExponentialBackoff, ReplayBody, RetryLayer, RetryPolicy},
    signing::{
        BufferedBody, Key, KeyRing, SignRequestLayer, VerifiedSignature, VerifySignatureLayer,
    },
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tower::{BoxError, ServiceBuilder, ServiceExt, timeout::TimeoutLayer};

/// What the upstream does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Fault {
    Healthy = 0,
    Errors = 1,
    Drop = 2,
    Slow = 3,
}

impl Fault {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Errors,
            2 => Self::Drop,
            3 => Self::Slow,
            _ => Self::Healthy,
        }
    }
}

/// The per-attempt timeout of the client; the slow upstream takes longer than this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// The breaker's cooldown, short for the demonstration (the default is 30 s).
const COOLDOWN: Duration = Duration::from_millis(500);

/// Starts the fault-injecting upstream on a free loopback port.
async fn start_upstream(fault: Arc<AtomicU8>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/data", get(data))
        .with_state(fault.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if Fault::from_u8(fault.load(Ordering::SeqCst)) == Fault::Drop {
                // Close the connection without answering: the client sees a connection error.
                drop(stream);
                continue;
            }
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                // One request per connection, so a change of fault hits the next call at once
                // (a pooled keep-alive connection would outlive the "drop connections" fault).
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().keep_alive(false);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn data(AxumState(fault): AxumState<Arc<AtomicU8>>) -> Result<&'static str, StatusCode> {
    match Fault::from_u8(fault.load(Ordering::SeqCst)) {
        Fault::Healthy | Fault::Drop => Ok("fresh data"),
        Fault::Errors => Err(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Slow => {
            tokio::time::sleep(ATTEMPT_TIMEOUT * 4).await;
            Ok("late data")
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match run().await {
        Ok(true) => signed_calls().await,
        other => other,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, BoxError> {
    let fault = Arc::new(AtomicU8::new(Fault::Healthy as u8));
    let upstream = start_upstream(fault.clone()).await?;
    let url = format!("http://{upstream}/data");
    println!("fault-injecting upstream on {upstream}");

    let transitions: Arc<Mutex<Vec<(State, State)>>> = Arc::default();
    let breaker = Breaker::new(
        BreakerConfig::consecutive_failures(5)
            .cooldown(COOLDOWN)
            .on_state_change({
                let transitions = transitions.clone();
                move |change| {
                    println!(
                        "    breaker: {:?} -> {:?} ({})",
                        change.from, change.to, change.reason
                    );
                    if let Ok(mut t) = transitions.lock() {
                        t.push((change.from, change.to));
                    }
                }
            }),
    )?;

    // DESIGN.md §3, client stack: request id → retry → breaker → timeout per attempt → client.
    let http = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let policy = RetryPolicy::default().with_backoff(ExponentialBackoff::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
    )?);
    let client = ServiceBuilder::new()
        .layer(ForwardRequestIdLayer::new())
        .layer(RetryLayer::new(policy))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(http);

    let call = |n: u32| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let id: RequestId = format!("client-call-{n}").parse().map_err(BoxError::from)?;
            let mut req = Request::get(url).body(Full::new(Bytes::new()))?;
            req.extensions_mut().insert(id);
            let started = Instant::now();
            let result = client.oneshot(req).await;
            let took = started.elapsed();
            match result {
                Ok(res) => {
                    let status = res.status();
                    let body = res.into_body().collect().await?.to_bytes();
                    println!(
                        "  call {n}: {status} {:?} in {took:.1?}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) => match find::<CircuitOpen>(&e) {
                    Some(open) if e.attempts() <= 1 => println!(
                        "  call {n}: rejected at once by the open breaker ({open}) in {took:.1?}"
                    ),
                    Some(open) => println!(
                        "  call {n}: the probe failed, then the retry met the open breaker \
                         ({open}): {} attempts in {took:.1?}",
                        e.attempts()
                    ),
                    None => println!("  call {n}: failed: {e} in {took:.1?}"),
                },
            }
            Ok::<_, BoxError>(())
        }
    };

    let mut n = 0;
    let phase = |name: &str, mode: Fault| {
        println!("{name}");
        fault.store(mode as u8, Ordering::SeqCst);
    };

    phase("upstream healthy:", Fault::Healthy);
    for _ in 0..3 {
        n += 1;
        call(n).await?;
    }

    phase(
        "upstream answers 500 (not retried; each one a failure):",
        Fault::Errors,
    );
    while breaker.state() == State::Closed && n < 20 {
        n += 1;
        call(n).await?;
    }
    for _ in 0..2 {
        n += 1;
        call(n).await?;
    }

    phase(
        "upstream drops connections; after the cooldown one probe goes through:",
        Fault::Drop,
    );
    tokio::time::sleep(COOLDOWN).await;
    n += 1;
    call(n).await?;

    phase(
        "upstream answers too slowly; after the cooldown one probe times out:",
        Fault::Slow,
    );
    tokio::time::sleep(COOLDOWN).await;
    n += 1;
    call(n).await?;

    phase(
        "upstream recovers; after the cooldown the probe succeeds:",
        Fault::Healthy,
    );
    tokio::time::sleep(COOLDOWN).await;
    for _ in 0..3 {
        n += 1;
        call(n).await?;
    }

    let snapshot = breaker.snapshot();
    println!(
        "breaker counters: calls {}, failures {}, rejections {}, opened {}",
        snapshot.calls, snapshot.failures, snapshot.rejections, snapshot.opened
    );

    use State::{Closed, HalfOpen, Open};
    let expected = [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Open),
        (Open, HalfOpen),
        (HalfOpen, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
    ];
    let seen = transitions.lock().map(|t| t.clone()).unwrap_or_default();
    if seen == expected {
        println!("transitions as expected: closed → open → half-open → … → closed");
        Ok(true)
    } else {
        eprintln!("unexpected transitions: {seen:?}");
        Ok(false)
    }
}

const ID_VAR: &str = "BATTLEMENT_SIGNING_KEY_ID";
const SECRET_VAR: &str = "BATTLEMENT_SIGNING_SECRET";
const API_KEY_VAR: &str = "BATTLEMENT_API_KEY";

/// Part 2: signed and API-key calls through the full client stack.
async fn signed_calls() -> Result<bool, BoxError> {
    let (base, ring, api_key) = match std::env::var("BATTLEMENT_SERVER") {
        Ok(base) => {
            let base = base.trim_end_matches('/').to_owned();
            if !base.starts_with("http://") {
                return Err(format!(
                    "BATTLEMENT_SERVER={base:?}: this client speaks plain HTTP only (http://host:port)"
                )
                .into());
            }
            println!(
                "part 2 calls the server at {base} (BATTLEMENT_SERVER), signing with key id {:?}",
                std::env::var(ID_VAR).unwrap_or_default()
            );
            (
                base,
                KeyRing::from_env(ID_VAR, SECRET_VAR)?,
                std::env::var(API_KEY_VAR).ok(),
            )
        }
        Err(_) => {
            // Issue 18: the variables a server printed, without `BATTLEMENT_SERVER`, would
            // otherwise sign against the demo server below without a word.
            let set: Vec<_> = [ID_VAR, SECRET_VAR, API_KEY_VAR]
                .into_iter()
                .filter(|v| std::env::var_os(v).is_some())
                .collect();
            if !set.is_empty() {
                println!(
                    "warning: {} set but BATTLEMENT_SERVER is not: part 2 does NOT call your \
                     server, and ignores them",
                    set.join(", ")
                );
            }
            let ring = KeyRing::new(Key::hmac_sha256("client-demo", &random_secret()?)?);
            let api_key = generate_key("demo_")?;
            let addr = start_verifying_server(ring.clone(), api_key.hash()).await?;
            println!(
                "part 2 calls its own in-process demo server on http://{addr}, not `cargo run \
                 --example server` (to call that one, run the command it prints, which sets \
                 BATTLEMENT_SERVER)"
            );
            (
                format!("http://{addr}"),
                ring,
                Some(api_key.key().to_owned()),
            )
        }
    };
    println!("signed calls to {base}:");

    // The client stack of DESIGN.md §3 with the sign layer inside retry and breaker, so every
    // attempt gets a fresh `created` and nonce.
    let http = Client::builder(TokioExecutor::new()).build_http::<BufferedBody>();
    let breaker = Breaker::new(BreakerConfig::default())?;
    let client = ServiceBuilder::new()
        .layer(ForwardRequestIdLayer::new())
        .layer(RetryLayer::new(RetryPolicy::default()))
        .layer(CircuitBreakerLayer::new(breaker))
        .layer(SignRequestLayer::new(ring))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(http);

    let mut ok = true;
    let mut expect = |what: &str, got: StatusCode, want: StatusCode, body: &[u8]| {
        println!("  {what}: {got} {}", String::from_utf8_lossy(body));
        if got != want {
            eprintln!("  expected {want}");
            ok = false;
        }
    };

    // With `[api_key]` in its configuration the server authenticates every route: the key goes
    // on every call (the demo server and the default example server ignore it on `/signed/`).
    let bearer = api_key.as_ref().map(|key| format!("Bearer {key}"));
    let with_key = |b: http::request::Builder| match &bearer {
        Some(v) => b.header(http::header::AUTHORIZATION, v),
        None => b,
    };
    let order = with_key(Request::post(format!("{base}/signed/orders")))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(br#"{"sku":"B-42","qty":3}"#)))?;
    let res = client.clone().oneshot(order).await?;
    let (status, body) = (res.status(), res.into_body().collect().await?.to_bytes());
    expect(
        "signed POST /signed/orders",
        status,
        StatusCode::CREATED,
        &body,
    );

    let status_req =
        with_key(Request::get(format!("{base}/signed/status"))).body(Full::new(Bytes::new()))?;
    let res = client.clone().oneshot(status_req).await?;
    let (status, body) = (res.status(), res.into_body().collect().await?.to_bytes());
    expect("signed GET /signed/status", status, StatusCode::OK, &body);

    // The same order without a signature: refused.
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let unsigned = with_key(Request::post(format!("{base}/signed/orders")))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"sku":"B-42","qty":300}"#,
        )))?;
    let res = plain.request(unsigned).await?;
    let (status, body) = (res.status(), res.into_body().collect().await?.to_bytes());
    expect(
        "unsigned POST /signed/orders",
        status,
        StatusCode::UNAUTHORIZED,
        &body,
    );

    if let Some(key) = api_key {
        let me = Request::get(format!("{base}/keyed/me"))
            .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Full::new(Bytes::new()))?;
        let res = client.clone().oneshot(me).await?;
        let (status, body) = (res.status(), res.into_body().collect().await?.to_bytes());
        expect(
            "GET /keyed/me with an API key",
            status,
            StatusCode::OK,
            &body,
        );
    } else {
        println!("  (set BATTLEMENT_API_KEY to call /keyed/me)");
    }
    Ok(ok)
}

fn random_secret() -> Result<[u8; 32], BoxError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| BoxError::from(e.to_string()))?;
    Ok(secret)
}

/// A server that verifies what `examples/server.rs` verifies on `/signed/` and `/keyed/`.
async fn start_verifying_server(ring: KeyRing, key: KeyHash) -> Result<SocketAddr, BoxError> {
    let principal = Principal::new(PrincipalId::new("client-demo")?);
    let keys = ApiKeys::builder().key(key, &principal).build()?;
    let signed = Router::new()
        .route(
            "/orders",
            post(
                |Extension(sig): Extension<VerifiedSignature>, body: String| async move {
                    (
                        StatusCode::CREATED,
                        format!("{} ordered {body}", sig.key_id()),
                    )
                },
            ),
        )
        .route(
            "/status",
            get(|Extension(sig): Extension<VerifiedSignature>| async move {
                format!("ok, signed by {}", sig.key_id())
            }),
        )
        .layer(VerifySignatureLayer::new(ring));
    let keyed = Router::new()
        .route(
            "/me",
            get(|Extension(p): Extension<Principal>| async move { p.id().to_string() }),
        )
        .layer(ApiKeyLayer::new(keys));
    let app = Router::new()
        .nest("/signed", signed)
        .nest("/keyed", keyed)
        .layer(SetRequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(addr)
}

/// Finds an error of type `E` in an error's chain of sources.
fn find<'a, E: std::error::Error + 'static>(
    mut error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    loop {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        error = error.source()?;
    }
}
