//! Replay protection at the edges: a nonce (or webhook id) is kept until its own acceptance
//! window has closed, and stacks built from one configuration share their nonces on Redis.
//!
//! The Redis tests start their own `redis-server`; without it on the PATH they print
//! "skipped: redis-server not found" and pass, unless `BATTLEMENT_REQUIRE_REDIS=1`.

use std::{convert::Infallible, time::Duration};

use axum::{Router, body::Body, routing::any};
use battlement::signing::{
    BufferedBody, Key, KeyRing, SignRequestLayer, SignatureError, SignatureErrorKind, TokioClock,
    VerifySignatureLayer,
    webhooks::{VerifyWebhookLayer, Webhook, WebhookError, WebhookErrorKind, WebhookSecret},
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const NOW: u64 = 1_700_000_000;
/// The verifier's defaults.
const MAX_AGE: u64 = 300;
const SKEW: u64 = 60;
const TOLERANCE: u64 = 300;

fn ring() -> KeyRing {
    KeyRing::new(Key::hmac_sha256("client-1", &[7; 32]).unwrap())
}

/// Signs a POST with the crate's signer, its `created` read from `signer_clock`; the captured
/// request comes back as its parts and body, to be sent as often as wanted.
async fn signed(signer: SignRequestLayer) -> (http::request::Parts, bytes::Bytes) {
    let req = Request::post("http://api.example.com/orders")
        .body(Body::from("{\"qty\":1}"))
        .unwrap();
    let signed: Request<BufferedBody> = ServiceBuilder::new()
        .layer(signer)
        .service(service_fn(|r: Request<BufferedBody>| async move {
            Ok::<_, Infallible>(r)
        }))
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = signed.into_parts();
    (parts, body.into_bytes())
}

fn copy(captured: &(http::request::Parts, bytes::Bytes)) -> Request<Body> {
    Request::from_parts(captured.0.clone(), Body::from(captured.1.clone()))
}

async fn send_signed(app: &Router, req: Request<Body>) -> (StatusCode, Option<SignatureErrorKind>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let kind = res.extensions().get::<SignatureError>().map(|e| e.kind());
    (res.status(), kind)
}

fn verifying_app(clock: TokioClock) -> Router {
    Router::new()
        .route("/{*path}", any(|| async { "done" }))
        .layer(VerifySignatureLayer::new(ring()).with_clock(clock))
}

// ---------------------------------------------------------------------------------------------
// Item: the window's last second

/// A signature first used at the earliest moment it is accepted (`created` = now + skew) is
/// still accepted during the second `created + max_age`: its nonce must still be remembered
/// then. Kept for `max_age + skew` from first use, it was forgotten one second early.
#[tokio::test(start_paused = true)]
async fn a_nonce_outlives_the_last_second_of_its_window() {
    let verifier_clock = TokioClock::starting_at(NOW);
    let app = verifying_app(verifier_clock);
    // The client's clock is `SKEW` ahead: `created` = NOW + SKEW, accepted (not "from the
    // future"), and acceptable until the end of the second NOW + SKEW + MAX_AGE.
    let signer = SignRequestLayer::new(ring()).with_clock(TokioClock::starting_at(NOW + SKEW));
    let captured = signed(signer).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::OK, None)
    );
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::Replayed))
    );

    // The last accepted second: now - created == MAX_AGE.
    tokio::time::advance(Duration::from_secs(MAX_AGE + SKEW)).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::Replayed)),
        "replayed in the last second of its window"
    );
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::Replayed)),
        "replayed at the very end of its window"
    );
    // Then the window itself refuses it.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::TooOld))
    );
}

/// Every `created` the verifier accepts, first used at once and replayed in each later second
/// until the window refuses it: never accepted twice.
#[tokio::test(start_paused = true)]
async fn no_created_in_the_window_lets_a_replay_through() {
    // `created` from the oldest accepted (now - MAX_AGE) to the newest (now + SKEW), by steps.
    let offsets = (-(MAX_AGE as i64)..=SKEW as i64).step_by(30);
    for offset in offsets.chain([SKEW as i64 - 1, -(MAX_AGE as i64) + 1]) {
        let start = TokioClock::starting_at(NOW);
        let app = verifying_app(start);
        let created = NOW.checked_add_signed(offset).unwrap();
        let signer = SignRequestLayer::new(ring()).with_clock(TokioClock::starting_at(created));
        let captured = signed(signer).await;
        assert_eq!(
            send_signed(&app, copy(&captured)).await.0,
            StatusCode::OK,
            "offset {offset}"
        );
        // Replay once a second (bounded: at most MAX_AGE + SKEW + 2 tries) until too old.
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(
                tries <= MAX_AGE + SKEW + 2,
                "offset {offset}: never too old"
            );
            let (status, kind) = send_signed(&app, copy(&captured)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "offset {offset}, try {tries}"
            );
            if kind == Some(SignatureErrorKind::TooOld) {
                break;
            }
            assert_eq!(kind, Some(SignatureErrorKind::Replayed), "offset {offset}");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
}

/// With `expires` the window closes at `expires`; the nonce is kept at least that long.
#[tokio::test(start_paused = true)]
async fn a_nonce_is_kept_until_expires_too() {
    let app = verifying_app(TokioClock::starting_at(NOW));
    // created = NOW + SKEW, expires 200 s later: the window closes at expires.
    let signer = SignRequestLayer::new(ring())
        .with_clock(TokioClock::starting_at(NOW + SKEW))
        .with_expires_in(Duration::from_secs(200));
    let captured = signed(signer).await;
    assert_eq!(send_signed(&app, copy(&captured)).await.0, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(SKEW + 199)).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::Replayed))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        send_signed(&app, copy(&captured)).await,
        (StatusCode::UNAUTHORIZED, Some(SignatureErrorKind::Expired))
    );
}

fn hook() -> Webhook {
    Webhook::new(WebhookSecret::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap())
}

async fn send_hook(app: &Router, id: &str, ts: u64) -> (StatusCode, Option<WebhookErrorKind>) {
    let body = br#"{"type":"invoice.paid"}"#;
    let mut req = Request::post("/hooks").body(Body::from(&body[..])).unwrap();
    req.headers_mut()
        .extend(hook().headers(id, ts, body).unwrap());
    let res = app.clone().oneshot(req).await.unwrap();
    let kind = res.extensions().get::<WebhookError>().map(|e| e.kind());
    let status = res.status();
    let _ = res.into_body().collect().await.unwrap();
    (status, kind)
}

/// A webhook stamped `TOLERANCE` in the future is accepted until the end of the second
/// `timestamp + TOLERANCE`: its id must be remembered then (`2 × tolerance` from first use
/// forgot it one second early).
#[tokio::test(start_paused = true)]
async fn a_webhook_id_outlives_the_last_second_of_its_window() {
    let app = Router::new()
        .route("/hooks", any(|| async { "ok" }))
        .layer(VerifyWebhookLayer::new(hook()).with_clock(TokioClock::starting_at(NOW)));
    let ts = NOW + TOLERANCE;
    assert_eq!(send_hook(&app, "msg_1", ts).await, (StatusCode::OK, None));
    tokio::time::advance(Duration::from_secs(2 * TOLERANCE)).await;
    assert_eq!(
        send_hook(&app, "msg_1", ts).await,
        (StatusCode::UNAUTHORIZED, Some(WebhookErrorKind::Replayed)),
        "replayed in the last second of its window"
    );
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(
        send_hook(&app, "msg_1", ts).await,
        (StatusCode::UNAUTHORIZED, Some(WebhookErrorKind::Replayed))
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        send_hook(&app, "msg_1", ts).await,
        (StatusCode::UNAUTHORIZED, Some(WebhookErrorKind::TooOld))
    );
}

// ---------------------------------------------------------------------------------------------
// Item: config-built stacks share their nonces on Redis

/// `[redis]` (and `[rate_limit.redis]`) as configuration: errors, the audit, the store chosen.
/// None of these needs a running Redis (the connection is made on first use).
#[cfg(feature = "redis")]
mod config {
    use battlement::stack::{AuditStatus, ServerConfig, ServerStack, audit};

    pub(super) const KEY_HEX: &str =
        "0707070707070707070707070707070707070707070707070707070707070707";

    pub(super) fn signing(extra: &str) -> ServerConfig {
        ServerConfig::from_toml_str(&format!(
            "[[signing.keys]]\nid = \"client-1\"\nsecret = \"{KEY_HEX}\"\n{extra}"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn a_redis_section_puts_the_nonces_on_redis() {
        let shared =
            ServerStack::from_config(&signing("[redis]\nurl = \"redis://127.0.0.1:1/\"")).unwrap();
        assert!(shared.replay_store().unwrap().is_shared());
        assert!(shared.rate_limit_store().unwrap().is_shared());
        // One connection for both: the same breaker.
        let nonces = shared.replay_store().unwrap().redis().unwrap();
        let limits = shared.rate_limit_store().unwrap().redis().unwrap();
        assert!(std::ptr::eq(
            nonces.connection().breaker(),
            limits.connection().breaker()
        ));

        // `[rate_limit.redis]` alone: rate limits only, as before.
        let limits_only = ServerStack::from_config(&signing(
            "[rate_limit.redis]\nurl = \"redis://127.0.0.1:1/\"",
        ))
        .unwrap();
        assert!(limits_only.rate_limit_store().unwrap().is_shared());
        assert!(!limits_only.replay_store().unwrap().is_shared());

        // Neither: memory.
        let local = ServerStack::from_config(&signing("")).unwrap();
        assert!(!local.replay_store().unwrap().is_shared());
        assert!(local.replay_store().unwrap().memory().is_some());
    }

    /// Both sections: the limits on `[rate_limit.redis]` with its policy, the nonces on
    /// `[redis]` with its own (stricter nonces than limits).
    #[tokio::test]
    async fn both_sections_give_nonces_and_limits_their_own_policy() {
        use battlement::redis::FailurePolicy;
        let stack = ServerStack::from_config(&signing(
            "[redis]\nurl = \"redis://127.0.0.1:1/\"\non_failure = \"closed\"\n\
             [rate_limit.redis]\nurl = \"redis://127.0.0.1:1/\"\non_failure = \"local\"",
        ))
        .unwrap();
        let nonces = stack.replay_store().unwrap().redis().unwrap().connection();
        let limits = stack
            .rate_limit_store()
            .unwrap()
            .redis()
            .unwrap()
            .connection();
        assert_eq!(nonces.config().failure_policy(), FailurePolicy::FailClosed);
        assert_eq!(
            limits.config().failure_policy(),
            FailurePolicy::FallbackToMemory
        );
    }

    #[test]
    fn built_outside_a_runtime_the_nonce_store_is_still_shared() {
        let stack =
            ServerStack::from_config(&signing("[redis]\nurl = \"redis://127.0.0.1:1/\"")).unwrap();
        assert!(stack.replay_store().unwrap().is_shared());
        // No runtime: no connection yet, and `Debug` shows no URL.
        let debug = format!("{:?}", stack.replay_store().unwrap());
        assert!(debug.starts_with("StackReplayStore::Redis"), "{debug}");
        assert!(!debug.contains("127.0.0.1"), "{debug}");
    }

    #[test]
    fn errors_name_the_redis_section() {
        for (extra, field) in [
            ("[redis]\nurl = \"http://127.0.0.1/\"", "redis.url"),
            (
                "[redis]\nurl = \"redis://h/\"\ntimeout = \"10s\"",
                "redis.timeout",
            ),
            (
                "[redis]\nurl = \"redis://h/\"\nprefix = \"{x}\"",
                "redis.prefix",
            ),
            (
                "[redis]\nurl = \"redis://h/\"\nhash_key = \"abcd\"",
                "redis.hash_key",
            ),
            (
                "[redis]\nurl = { env = \"BATTLEMENT_TEST_UNSET_7c1\" }",
                "redis.url.env.BATTLEMENT_TEST_UNSET_7c1",
            ),
            ("[redis]\nurl = \"redis://h/\"\nbogus = 1", "redis"),
            // The compatible section keeps its names.
            (
                "[rate_limit.redis]\nurl = \"http://h/\"",
                "rate_limit.redis.url",
            ),
        ] {
            let err = match ServerConfig::from_toml_str(&signing_text(extra)) {
                Err(e) => e,
                Ok(cfg) => ServerStack::from_config(&cfg).unwrap_err(),
            };
            assert!(err.field().starts_with(field), "{extra}: {err}");
            assert!(!err.reason().contains("abcd"), "{err}");
        }
    }

    fn signing_text(extra: &str) -> String {
        format!("[[signing.keys]]\nid = \"client-1\"\nsecret = \"{KEY_HEX}\"\n{extra}")
    }

    #[test]
    fn the_audit_warns_when_limits_are_shared_but_nonces_are_not() {
        let hash_key = "hash_key = \"000102030405060708090a0b0c0d0e0f\"";
        let url = "url = \"rediss://:pw@redis.internal:6380/\"";
        let limits_only = audit(&signing(&format!("[rate_limit.redis]\n{url}\n{hash_key}")));
        assert_eq!(
            limits_only.status_of("replay_store"),
            Some(AuditStatus::Warn)
        );
        let item = limits_only.check("replay_store").next().unwrap();
        assert_eq!(item.field, "rate_limit.redis");
        assert!(item.reason.contains("replayed"), "{}", item.reason);

        let both = audit(&signing(&format!("[redis]\n{url}\n{hash_key}")));
        assert_eq!(both.status_of("replay_store"), Some(AuditStatus::Pass));
        assert_eq!(both.status_of("config"), Some(AuditStatus::Pass));

        // Shared, but unchecked while Redis is down.
        let open = audit(&signing(&format!(
            "[redis]\n{url}\n{hash_key}\non_failure = \"open\""
        )));
        assert_eq!(open.status_of("replay_store"), Some(AuditStatus::Warn));

        // One instance, nothing shared: nothing to warn about.
        let alone = audit(&signing(""));
        assert_eq!(alone.status_of("replay_store"), Some(AuditStatus::Pass));
        // No signing: no nonce check at all.
        let unsigned = audit(&ServerConfig::default());
        assert_eq!(unsigned.status_of("replay_store"), None);
    }
}

/// Without the `redis` feature, `[redis]` is refused at startup, naming the section: the
/// instances must not check nonces (or limit) on their own unnoticed.
#[cfg(not(feature = "redis"))]
#[test]
fn without_the_feature_a_redis_section_is_refused() {
    use battlement::{
        ConfigErrorKind,
        stack::{ServerConfig, ServerStack},
    };
    let cfg = ServerConfig::from_toml_str(
        "[redis]\nurl = \"redis://127.0.0.1:6379/\"\n[[signing.keys]]\nid = \"k\"\n\
         secret = \"0707070707070707070707070707070707070707070707070707070707070707\"",
    )
    .unwrap();
    let err = ServerStack::from_config(&cfg).unwrap_err();
    assert_eq!(err.field(), "redis", "{err}");
    assert_eq!(err.kind(), ConfigErrorKind::Unsafe);
    assert!(err.reason().contains("`redis` feature"), "{err}");
    // The audit fails the config item rather than pass a stack that shares nothing.
    assert!(cfg.audit().has_failures());
}

#[cfg(feature = "redis")]
mod redis_support;

/// Two instances from one configuration on one real `redis-server`.
#[cfg(feature = "redis")]
mod two_instances {
    use std::net::SocketAddr;

    use axum::{Router, routing::post};
    use battlement::{
        signing::{Key, KeyRing, SignRequestLayer, SignatureError},
        stack::{ServerConfig, ServerStack},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{config::KEY_HEX, signed};

    use super::redis_support::{RedisServer, http::serve};

    fn config(url: &str, on_failure: &str) -> ServerConfig {
        config_with(url, on_failure, "")
    }

    fn config_with(url: &str, on_failure: &str, extra: &str) -> ServerConfig {
        ServerConfig::from_toml_str(&format!(
            r#"
            {extra}
            [[signing.keys]]
            id = "client-1"
            secret = "{KEY_HEX}"

            [redis]
            url = "{url}"
            prefix = "replay-test"
            on_failure = "{on_failure}"
            # Generous: the first call connects and loads the script on a busy machine.
            timeout = "1s"
            "#
        ))
        .unwrap()
    }

    /// The instance's router; outside the stack, a test-only header shows the typed cause of
    /// a refusal (the problem body is the same for every signature failure, by design).
    fn app(stack: &ServerStack) -> Router {
        stack
            .wrap(Router::new().route("/orders", post(|| async { "done" })))
            .layer(axum::middleware::map_response(
                |mut res: axum::response::Response| async move {
                    if let Some(kind) = res.extensions().get::<SignatureError>().map(|e| e.kind()) {
                        res.headers_mut().insert(
                            "x-test-cause",
                            http::HeaderValue::from_static(kind.as_str()),
                        );
                    }
                    res
                },
            ))
    }

    fn signer() -> SignRequestLayer {
        SignRequestLayer::new(KeyRing::new(
            Key::hmac_sha256("client-1", &[7; 32]).unwrap(),
        ))
    }

    /// Sends the captured request as HTTP/1.1 over a fresh connection to `addr` (as a load
    /// balancer would, `Host: api.example.com`); the status and the whole response.
    async fn send(
        addr: SocketAddr,
        captured: &(http::request::Parts, bytes::Bytes),
    ) -> (u16, String) {
        let (parts, body) = captured;
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: api.example.com\r\nconnection: close\r\ncontent-length: {}\r\n",
            parts.method,
            parts.uri.path(),
            body.len()
        );
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
            }
        }
        head.push_str("\r\n");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        (status, text)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_accepted_by_one_instance_is_refused_by_the_other() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let cfg = config(&redis.url(), "closed");
        // Two instances: two stacks (two connections), two routers on two sockets.
        let a = ServerStack::from_config(&cfg).unwrap();
        let b = ServerStack::from_config(&cfg).unwrap();
        let (addr_a, addr_b) = (serve(app(&a)).await, serve(app(&b)).await);

        let captured = signed(signer()).await;
        let (status, res) = send(addr_a, &captured).await;
        assert_eq!(status, 200, "{res}");
        assert!(res.ends_with("\r\n\r\ndone"), "{res}");

        // The same bytes to the other instance, then 20 more to both: all refused as replays
        // (not for another reason: the cause is `replayed`), each a problem+json 401.
        for i in 0..21 {
            let addr = if i % 2 == 0 { addr_b } else { addr_a };
            let (status, res) = send(addr, &captured).await;
            assert_eq!(status, 401, "replay {i}: {res}");
            assert!(
                res.contains("x-test-cause: replayed\r\n"),
                "replay {i}: {res}"
            );
            assert!(
                res.contains("content-type: application/problem+json\r\n"),
                "replay {i}: {res}"
            );
            assert!(
                res.contains(r#""type":"https://docs.rs/battlement/latest/battlement/problem/index.html#unauthorized""#),
                "replay {i}: {res}"
            );
        }
        // One nonce key, under the configured prefix.
        let keys = redis.cmd("KEYS *");
        assert!(keys.contains("replay-test:nonce:sig:client-1:"), "{keys}");
        assert!(
            redis.cmd("DBSIZE").contains(":2"),
            "{}",
            redis.cmd("KEYS *")
        );

        // A fresh request still passes at either instance.
        assert_eq!(send(addr_b, &signed(signer()).await).await.0, 200);
        assert!(a.replay_store().unwrap().is_shared());
    }

    /// The nonce key on Redis lives until the signature's window has closed: for `created` =
    /// now + skew that is past `max_age + skew` from first use (item: the window's last second).
    #[tokio::test]
    async fn the_nonce_key_expires_with_the_signature_window() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let stack = ServerStack::from_config(&config(&redis.url(), "closed")).unwrap();
        let app = app(&stack);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ahead = signer().with_clock(move || now + super::SKEW);
        let captured = signed(ahead).await;
        let mut req = super::copy(&captured);
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [192, 0, 2, 1],
                1,
            ))));
        assert_eq!(
            tower::ServiceExt::oneshot(app, req).await.unwrap().status(),
            http::StatusCode::OK
        );
        let keys = redis.cmd("KEYS replay-test:nonce:*");
        let key = keys
            .lines()
            .find(|l| l.starts_with("replay-test:nonce:"))
            .unwrap_or_else(|| panic!("no nonce key: {keys}"));
        let pttl: u64 = redis
            .cmd(&format!("PTTL {key}"))
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap();
        // The window closes at the end of the second created + max_age = now + skew + max_age
        // (+1 s); the nonce is kept at least until then.
        let window_ms = (super::SKEW + super::MAX_AGE + 1) * 1000;
        assert!(
            pttl + 2000 > window_ms + super::SKEW * 1000 && pttl >= window_ms - 2000,
            "PTTL {pttl} ms, window {window_ms} ms"
        );
        assert!(
            pttl > (super::MAX_AGE + super::SKEW) * 1000,
            "PTTL {pttl} ms"
        );
    }

    /// Redis down under `on_failure = "closed"`: a signed request is refused (503), never
    /// accepted with its nonce unchecked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_down_a_closed_policy_refuses_instead_of_accepting_unchecked() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        // No rate limit: the 503 must come from the nonce store, not from the limiter.
        let cfg = config_with(&redis.url(), "closed", "[rate_limit]\nenabled = false");
        let stack = ServerStack::from_config(&cfg).unwrap();
        let addr = serve(app(&stack)).await;
        assert_eq!(send(addr, &signed(signer()).await).await.0, 200);
        redis.kill();
        for i in 0..5 {
            let (status, res) = send(addr, &signed(signer()).await).await;
            assert_eq!(status, 503, "request {i}: {res}");
            assert!(
                res.contains("x-test-cause: replay_store_unavailable\r\n"),
                "request {i}: {res}"
            );
        }
    }
}
