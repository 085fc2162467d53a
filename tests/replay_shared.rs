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
