//! `[rate_limit.redis]` wired into the server stack, against a real `redis-server` started by
//! the test.
//!
//! Without `redis-server` on the PATH the tests print "skipped: redis-server not found" and
//! pass; with `BATTLEMENT_REQUIRE_REDIS=1` a missing server fails them.
#![cfg(feature = "redis")]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use battlement::{
    ConfigErrorKind,
    circuit_breaker::State,
    stack::{ServerConfig, ServerStack},
};
use http::{Request, StatusCode};
use tower::ServiceExt;

mod redis_support;

use redis_support::{
    RedisServer, free_port,
    http::{http_get, request, serve, status},
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A config with a per-IP quota of `burst` a minute on the Redis at `url`.
fn config(url: &str, burst: u32, on_failure: &str) -> ServerConfig {
    ServerConfig::from_toml_str(&format!(
        r#"
        [rate_limit.per_ip]
        requests = {burst}
        per = "1m"
        burst = {burst}

        [rate_limit.redis]
        url = "{url}"
        prefix = "stack-test"
        on_failure = "{on_failure}"
        "#
    ))
    .unwrap()
}

fn app(stack: &ServerStack) -> Router {
    stack.wrap(Router::new().route("/", get(|| async { "ok" })))
}

fn breaker_state(stack: &ServerStack) -> State {
    let store = stack.rate_limit_store().unwrap().redis().unwrap();
    store.connection().breaker().state()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_from_one_config_share_one_quota() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cfg = config(&redis.url(), 10, "closed");
    // Two instances: two stacks (two connections), two routers on two sockets.
    let a = ServerStack::from_config(&cfg).unwrap();
    let b = ServerStack::from_config(&cfg).unwrap();
    assert!(a.rate_limit_store().unwrap().is_shared());
    let addr_a = serve(app(&a)).await;
    let addr_b = serve(app(&b)).await;

    // The first decision loads the script (`NOSCRIPT`, then `SCRIPT LOAD`); count the others.
    assert_eq!(http_get(addr_a).await, 200);
    redis.cmd("CONFIG RESETSTAT");
    let (mut ok, mut limited) = (1, 0);
    for i in 1..30 {
        match http_get(if i % 2 == 0 { addr_a } else { addr_b }).await {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // One quota's worth in total, not one per instance.
    assert_eq!((ok, limited), (10, 20));
    // One round trip per decision made by Redis, on one bucket under the configured prefix;
    // after its first refusal each instance refuses locally (its over-limit cache) until the
    // wait is over.
    let local = |s: &ServerStack| {
        s.rate_limit_store()
            .unwrap()
            .redis()
            .unwrap()
            .local_refusals()
    };
    assert_eq!(local(&a) + local(&b), 18);
    assert_eq!(redis.calls("evalsha"), 29 - 18);
    let keys = redis.cmd("KEYS *");
    assert!(keys.contains("stack-test:rl:{"), "{keys}");
    assert!(redis.cmd("DBSIZE").contains(":1"));
    assert_eq!(breaker_state(&a), State::Closed);
    assert_eq!(breaker_state(&b), State::Closed);
}

#[tokio::test]
async fn the_per_principal_limit_is_shared_too() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let hash = battlement::auth::api_key::hash_key("demo-key-1").to_hex();
    let cfg = ServerConfig::from_toml_str(&format!(
        r#"
        [api_key]
        header = "x-api-key"
        [[api_key.principals]]
        id = "alice"
        keys = ["{hash}"]
        [rate_limit.per_principal]
        requests = 2
        burst = 2
        [rate_limit.redis]
        url = "{}"
        "#,
        redis.url()
    ))
    .unwrap();
    let a = app(&ServerStack::from_config(&cfg).unwrap());
    let b = app(&ServerStack::from_config(&cfg).unwrap());
    let with_key = |last: u8| {
        let mut req = Request::get("/")
            .header("x-api-key", "demo-key-1")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, last], 40000))));
        req
    };
    // Alice from four addresses through two instances: her quota of 2 holds across them.
    let mut got = Vec::new();
    for (i, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        got.push(
            app.clone()
                .oneshot(with_key(i as u8 + 1))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        got,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn different_prefixes_limit_separately() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = ServerStack::from_config(&config(&redis.url(), 2, "closed")).unwrap();
    let other = config(&redis.url(), 2, "closed");
    let text = format!(
        "[rate_limit.per_ip]\nrequests = 2\nburst = 2\n[rate_limit.redis]\nurl = \"{}\"\nprefix = \"other\"",
        redis.url()
    );
    let b = ServerStack::from_config(&ServerConfig::from_toml_str(&text).unwrap()).unwrap();
    let same = ServerStack::from_config(&other).unwrap();
    let (a, b, same) = (app(&a), app(&b), app(&same));
    assert_eq!(status(&a).await, (StatusCode::OK, true));
    assert_eq!(status(&a).await, (StatusCode::OK, true));
    assert_eq!(status(&same).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status(&b).await.0, StatusCode::OK);
}

/// Redis killed mid-test: the configured policy holds, no request waits longer than the
/// store timeout, and once Redis is back the stack uses it again by itself.
async fn outage(on_failure: &str) {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let stack = ServerStack::from_config(&config(&redis.url(), 3, on_failure)).unwrap();
    let app = app(&stack);
    assert_eq!(status(&app).await, (StatusCode::OK, true));

    redis.kill();
    let timeout = Duration::from_millis(50);
    let margin = Duration::from_millis(150);
    let mut codes = Vec::new();
    for i in 0..6 {
        let start = Instant::now();
        codes.push(status(&app).await);
        let took = start.elapsed();
        assert!(took < timeout + margin, "request {i} waited {took:?}");
    }
    assert_eq!(breaker_state(&stack), State::Open);
    match on_failure {
        "open" => assert!(
            codes.iter().all(|&c| c == (StatusCode::OK, false)),
            "{codes:?}"
        ),
        "closed" => assert!(
            codes
                .iter()
                .all(|&(c, _)| c == StatusCode::SERVICE_UNAVAILABLE),
            "{codes:?}"
        ),
        _ => {
            // The same quota in this instance's memory, from a fresh bucket.
            let got: Vec<StatusCode> = codes.iter().map(|c| c.0).collect();
            assert_eq!(
                got[..4],
                [
                    StatusCode::OK,
                    StatusCode::OK,
                    StatusCode::OK,
                    StatusCode::TOO_MANY_REQUESTS
                ],
                "{codes:?}"
            );
        }
    }

    // Redis comes back (empty): the breaker closes by itself and Redis decides again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while breaker_state(&stack) != State::Closed {
        assert!(
            Instant::now() < deadline,
            "the stack never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let _ = status(&app).await;
        assert!(start.elapsed() < timeout + margin);
    }
    redis.cmd("CONFIG RESETSTAT");
    assert!(status(&app).await.1);
    assert_eq!(redis.calls("evalsha"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_open() {
    outage("open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_closed() {
    outage("closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_local() {
    outage("local").await;
}

#[tokio::test]
async fn a_closed_port_gets_the_policy_at_once() {
    // Nothing listens there: every decision fails fast, the stack still starts.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    for (policy, expected) in [
        ("open", [StatusCode::OK; 3]),
        ("closed", [StatusCode::SERVICE_UNAVAILABLE; 3]),
        (
            "local",
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS,
            ],
        ),
    ] {
        let stack = ServerStack::from_config(&config(&url, 2, policy)).unwrap();
        let app = app(&stack);
        let mut got = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            got.push(status(&app).await.0);
            assert!(start.elapsed() < Duration::from_millis(500), "{policy}");
        }
        assert_eq!(got, expected, "{policy}");
    }
}

#[tokio::test]
async fn bad_settings_fail_at_startup_with_the_field_path() {
    let cases = [
        (
            "url = \"redis://:hunter2-pw@127.0.0.1:notaport/\"",
            "rate_limit.redis.url",
        ),
        (
            "url = \"http://:hunter2-pw@redis/\"",
            "rate_limit.redis.url",
        ),
        (
            "url = \"redis://:hunter2-pw@r/\"\nprefix = \"{tag}\"",
            "rate_limit.redis.prefix",
        ),
        (
            "url = \"redis://:hunter2-pw@r/\"\ntimeout = \"10s\"",
            "rate_limit.redis.timeout",
        ),
        (
            "url = { env = \"BATTLEMENT_TEST_UNSET_7c2\" }",
            "rate_limit.redis.url.env.BATTLEMENT_TEST_UNSET_7c2",
        ),
    ];
    for (section, field) in cases {
        let text = format!("[rate_limit.redis]\n{section}");
        let cfg = ServerConfig::from_toml_str(&text).unwrap();
        let err = ServerStack::from_config(&cfg).unwrap_err();
        assert_eq!(err.field(), field, "{section}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        assert!(cfg.validate().is_err());
    }
}

#[cfg(not(feature = "redis-tls"))]
#[tokio::test]
async fn rediss_without_the_tls_feature_is_refused() {
    let cfg =
        ServerConfig::from_toml_str("[rate_limit.redis]\nurl = \"rediss://:pw@r:6380/\"").unwrap();
    let err = ServerStack::from_config(&cfg).unwrap_err();
    assert_eq!(err.field(), "rate_limit.redis.url");
    assert!(err.reason().contains("redis-tls"), "{err}");
}

#[test]
fn a_stack_built_outside_a_runtime_connects_on_its_first_request() {
    // Bad URLs are still refused at once, with the field.
    let cfg = ServerConfig::from_toml_str(
        "[rate_limit.redis]\nurl = \"redis://:hunter2-pw@127.0.0.1:notaport/\"",
    )
    .unwrap();
    let err = ServerStack::from_config(&cfg).unwrap_err();
    assert_eq!(err.field(), "rate_limit.redis.url");
    assert_eq!(err.kind(), ConfigErrorKind::Invalid);
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
    // What the audit and `validate` do: no runtime there.
    assert!(cfg.validate().is_err());
    assert!(
        config("redis://127.0.0.1:1/", 2, "local")
            .validate()
            .is_ok()
    );

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cfg = config(&redis.url(), 2, "closed");
    let early = ServerStack::from_config(&cfg).unwrap();
    assert!(early.rate_limit_store().unwrap().is_shared());
    assert!(!format!("{early:?}").contains(&redis.url()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let late = ServerStack::from_config(&cfg).unwrap();
        let (early, late) = (app(&early), app(&late));
        // One quota across the two, the same buckets (fingerprints agree).
        assert_eq!(status(&early).await, (StatusCode::OK, true));
        assert_eq!(status(&late).await, (StatusCode::OK, true));
        assert_eq!(status(&early).await.0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status(&late).await.0, StatusCode::TOO_MANY_REQUESTS);
    });
    assert!(redis.cmd("DBSIZE").contains(":1"));
}

#[tokio::test]
async fn the_secret_never_shows() {
    let url = format!("redis://:hunter2-pw@127.0.0.1:{}/", free_port());
    let cfg = config(&url, 2, "local");
    let stack = ServerStack::from_config(&cfg).unwrap();
    for text in [
        format!("{cfg:?}"),
        format!("{stack:?}"),
        format!("{:?}", stack.rate_limit_store().unwrap()),
        cfg.audit().to_string(),
        cfg.audit().to_json(),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    // The request that failed to reach Redis does not carry it either.
    let res = app(&stack).oneshot(request()).await.unwrap();
    assert!(!format!("{res:?}").contains("hunter2"));
}

#[tokio::test]
async fn the_audit_passes_a_shared_store_and_warns_on_fail_open() {
    let url = "rediss://:pw@redis.internal:6380/";
    let with_key = |policy: &str, hash_key: bool| {
        let mut cfg = config(url, 2, policy);
        if hash_key {
            cfg.rate_limit.redis.as_mut().unwrap().hash_key = Some(
                battlement::config::SecretSource::Inline(zeroize::Zeroizing::new("5e".repeat(16))),
            );
        }
        cfg
    };
    let check = |policy: &str, hash_key: bool| {
        let report = with_key(policy, hash_key).audit();
        report
            .check("redis")
            .map(|i| (i.field.clone(), i.status))
            .collect::<Vec<_>>()
    };
    use battlement::stack::AuditStatus::{Pass, Warn};
    assert_eq!(
        check("local", true),
        [("rate_limit.redis".to_owned(), Pass)],
        "{}",
        with_key("local", true).audit()
    );
    assert_eq!(
        check("open", true),
        [
            ("rate_limit.redis".to_owned(), Pass),
            ("rate_limit.redis.on_failure".to_owned(), Warn)
        ]
    );
    // Without `hash_key` the fingerprints use the public default key.
    assert_eq!(
        check("local", false),
        [
            ("rate_limit.redis".to_owned(), Pass),
            ("rate_limit.redis.hash_key".to_owned(), Warn)
        ]
    );
}

#[tokio::test]
async fn a_configured_redis_stack_fits_router_layer() {
    let stack = ServerStack::from_config(&config("redis://127.0.0.1:1/", 2, "open")).unwrap();
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(stack);
    assert_eq!(status(&app).await, (StatusCode::OK, false));
}
