//! Integration tests of `stack`: the example config, validation errors, the audit, the server
//! stack on real axum routers (and a real socket), the client stack.

#[path = "support/serve.rs"]
mod serve;

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension, Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{Request, Response, StatusCode, header},
    routing::{get, post},
};
use battlement::{
    ConfigErrorKind, Stack,
    auth::api_key::{Principal, hash_key},
    request_id::RequestId,
    stack::{AuditStatus, ClientConfig, ClientStack, ServerConfig, ServerStack, audit},
};
use http_body_util::{BodyExt, Empty};
use tower::{Layer, ServiceExt, service_fn};

const EXAMPLE: &str = include_str!("../battlement.toml");

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("battlement-stack-{}-{name}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

/// The example with its secrets moved to temp files (tests cannot set environment variables).
fn example_with_files() -> String {
    let key = temp_file("key", &"ab".repeat(32));
    let old = temp_file("old", &"cd".repeat(32));
    let redis = temp_file("redis", "rediss://:s3cret@redis.internal:6380/0\n");
    let hash_key = temp_file("hash-key", &"5e".repeat(16));
    EXAMPLE
        .replace(
            r#"{ env = "BATTLEMENT_SIGNING_KEY" }"#,
            &format!("{{ file = {:?} }}", key.display().to_string()),
        )
        .replace("/run/secrets/partner-2025", &old.display().to_string())
        .replace(
            r#"{ env = "BATTLEMENT_REDIS_URL" }"#,
            &format!("{{ file = {:?} }}", redis.display().to_string()),
        )
        .replace(
            r#"{ env = "BATTLEMENT_REDIS_HASH_KEY" }"#,
            &format!("{{ file = {:?} }}", hash_key.display().to_string()),
        )
}

/// Every leaf path of a TOML table, array items indexed (arrays of scalars are leaves; the
/// `env`/`file` key of a secret table is a leaf of its own, so mutating it breaks the reference).
fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaves(&path, t, out),
            toml::Value::Array(items)
                if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
            {
                for (i, item) in items.iter().enumerate() {
                    leaves(&format!("{path}[{i}]"), item.as_table().unwrap(), out);
                }
            }
            _ => out.push(path),
        }
    }
}

fn replace_leaf(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    for seg in path.split('.') {
        match seg.split_once('[') {
            Some((name, idx)) => segments.push((
                name.to_owned(),
                Some(idx.trim_end_matches(']').parse().unwrap()),
            )),
            None => segments.push((seg.to_owned(), None)),
        }
    }
    let (last, parents) = segments.split_last().unwrap();
    let mut here = table;
    for (name, idx) in parents {
        let v = here.get_mut(name).unwrap();
        here = match idx {
            Some(i) => v.as_array_mut().unwrap()[*i].as_table_mut().unwrap(),
            None => v.as_table_mut().unwrap(),
        };
    }
    here.insert(last.0.clone(), value);
}

#[test]
fn example_config_parses_and_every_key_is_read() {
    let cfg = ServerConfig::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(cfg.trusted_proxies, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(cfg.body_limit.max.get(), 1 << 20);
    assert_eq!(cfg.rate_limit.per_ip.burst, Some(60));
    assert_eq!(
        cfg.security_headers.hsts_max_age.get().as_secs(),
        365 * 86_400
    );
    assert_eq!(cfg.signing.as_ref().unwrap().keys.len(), 2);
    assert_eq!(cfg.client.retry.budget.ratio, 0.2);

    // Each key is read by the config (not merely tolerated): a wrong type at that key fails
    // with exactly that key's path.
    let table: toml::Table = EXAMPLE.parse().unwrap();
    let mut paths = Vec::new();
    leaves("", &table, &mut paths);
    assert!(paths.len() > 70, "{}", paths.len());
    for path in &paths {
        let mut t = table.clone();
        let mut bogus = toml::Table::new();
        bogus.insert("bogus".into(), toml::Value::Boolean(true));
        replace_leaf(&mut t, path, toml::Value::Table(bogus));
        let text = toml::to_string(&t).unwrap();
        let err = ServerConfig::from_toml_str(&text).unwrap_err();
        assert!(
            err.field() == path || err.field() == format!("{path}.bogus"),
            "{path}: {err}"
        );
    }
}

#[test]
fn example_config_builds_and_passes_the_audit() {
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::from_toml_str(&example_with_files()).unwrap();
    // Without `redis`, `[rate_limit.redis]` is refused (never silently limited per instance);
    // without `redis-tls`, its `rediss://` URL is.
    #[cfg(not(all(feature = "redis", feature = "redis-tls")))]
    {
        let err = ServerStack::from_config(&cfg).unwrap_err();
        if cfg!(feature = "redis") {
            assert_eq!(err.field(), "rate_limit.redis.url", "{err}");
            assert!(err.reason().contains("redis-tls"), "{err}");
        } else {
            assert_eq!(err.field(), "rate_limit.redis", "{err}");
            assert!(err.reason().contains("`redis` feature"), "{err}");
        }
        cfg.rate_limit.redis = None;
    }
    let stack = ServerStack::from_config(&cfg).unwrap();
    assert_eq!(
        stack.rate_limit_store().unwrap().is_shared(),
        cfg!(all(feature = "redis", feature = "redis-tls"))
    );
    assert_eq!(
        stack.enabled(),
        [
            "request_id",
            "observe",
            "catch_panic",
            "security_headers",
            "https",
            "cors",
            "body_limit",
            "rate_limit_ip",
            "circuit_breaker",
            "timeout",
            "api_key",
            "signing",
            "rate_limit_principal"
        ]
    );
    ClientStack::signed_from_config(&cfg.client).unwrap();
    // The audit of the file as written (with its `[rate_limit.redis]`).
    let report = audit(&ServerConfig::from_toml_str(&example_with_files()).unwrap());
    let findings: Vec<_> = report.findings().map(|i| i.check).collect();
    if cfg!(all(feature = "redis", feature = "redis-tls")) {
        assert!(findings.is_empty(), "{report}");
    } else {
        // This build would refuse to start on it: the `config` item says why.
        assert_eq!(findings, ["config"], "{report}");
        let item = report.check("config").next().unwrap();
        assert!(item.field.starts_with("rate_limit.redis"), "{report}");
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["items"][0]["check"], "config");
    let expected = if findings.is_empty() { "pass" } else { "fail" };
    assert_eq!(json["items"][0]["status"], expected);
}

#[test]
fn environment_overrides_apply() {
    let vars = [
        ("BATTLEMENT__BODY_LIMIT__MAX".to_owned(), "2MiB".to_owned()),
        (
            "BATTLEMENT__RATE_LIMIT__PER_IP__BURST".to_owned(),
            "7".to_owned(),
        ),
        (
            "BATTLEMENT__CORS__ALLOW_ORIGINS".to_owned(),
            r#"["https://x.example"]"#.to_owned(),
        ),
        ("UNRELATED".to_owned(), "1".to_owned()),
    ];
    let cfg = ServerConfig::from_toml_with_env("[body_limit]\nmax = \"1MiB\"", vars).unwrap();
    assert_eq!(cfg.body_limit.max.get(), 2 << 20);
    assert_eq!(cfg.rate_limit.per_ip.burst, Some(7));
    assert!(cfg.cors.enabled);
    assert_eq!(cfg.cors.allow_origins, ["https://x.example"]);
    let bad = [("BATTLEMENT__BODY_LIMIT__MAX".to_owned(), "huge".to_owned())];
    let err = ServerConfig::from_toml_with_env("", bad).unwrap_err();
    assert_eq!(err.field(), "body_limit.max");
}

/// Parses then builds; the error of whichever step failed.
fn error_of(text: &str) -> battlement::ConfigError {
    let cfg = match ServerConfig::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Err(e) = ClientStack::from_config(&cfg.client) {
        return e;
    }
    ServerStack::from_config(&cfg).unwrap_err()
}

#[test]
fn invalid_configs_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("nope = 1", "nope"),
        ("[body_limit]\nmax = \"lots\"", "body_limit.max"),
        ("[body_limit]\nmaximum = \"1MiB\"", "body_limit.maximum"),
        ("[body_limit]\nmax = 0", "body_limit.max"),
        ("[timeout]\nrequest = \"30\"", "timeout.request"),
        (
            "[rate_limit.per_ip]\nrequests = 0",
            "rate_limit.per_ip.requests",
        ),
        ("[rate_limit.per_ip]\nburst = 0", "rate_limit.per_ip.burst"),
        (
            "[rate_limit.per_ip]\nrequests = -1",
            "rate_limit.per_ip.requests",
        ),
        ("[rate_limit.per_ip]\nper = \"0s\"", "rate_limit.per_ip.per"),
        (
            "[cors]\nallow_origins = [\"*\"]\nallow_credentials = true",
            "cors.allow_origins",
        ),
        (
            "[cors]\nallow_origins = [\"https://a.example\", \"ftp://x\"]",
            "cors.allow_origins[1]",
        ),
        (
            "[cors]\nallow_origins = [\"https://a.example/path\"]",
            "cors.allow_origins[0]",
        ),
        ("[cors]\nallow_origins = []", "cors.allow_origins"),
        (
            "[cors]\nallow_origins = [\"https://a.example\"]\nallow_methods = [\"G T\"]",
            "cors.allow_methods[0]",
        ),
        ("[https]\nredirect = true", "https.allowed_hosts"),
        (
            "[https]\nredirect = true\nallowed_hosts = [\"a b\"]",
            "https.allowed_hosts[0]",
        ),
        ("[request_id]\nheader = \"bad header\"", "request_id.header"),
        (
            "[request_id]\ntrust_incoming = \"everyone\"",
            "request_id.trust_incoming",
        ),
        (
            "[trace]\nredact_headers = [\"ok\", \"not ok\"]",
            "trace.redact_headers[1]",
        ),
        (
            "[security_headers]\npreset = \"html\"",
            "security_headers.preset",
        ),
        (
            "[[signing.keys]]\nid = \"k\"\nsecret = { env = \"BATTLEMENT_TEST_UNSET_91f\" }",
            "signing.keys[0].secret.env.BATTLEMENT_TEST_UNSET_91f",
        ),
        (
            "[[signing.keys]]\nid = \"k\"\nsecret = \"zz\"",
            "signing.keys[0].secret",
        ),
        (
            "[[signing.keys]]\nid = \"k\"\nsecret = { vault = \"x\" }",
            "signing.keys[0].secret",
        ),
        ("[signing]\nkeys = []", "signing.keys"),
        (
            "[rate_limit.redis]\nurl = \"http://redis\"",
            "rate_limit.redis.url",
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://r\"\ntimeout = \"10s\"",
            "rate_limit.redis.timeout",
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://r\"\non_failure = \"maybe\"",
            "rate_limit.redis.on_failure",
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://r\"\nhash_key = \"abcd\"",
            "rate_limit.redis.hash_key",
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://r\"\nhash_key = \"base64:not base64!\"",
            "rate_limit.redis.hash_key",
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://r\"\n\
             hash_key = { env = \"BATTLEMENT_TEST_UNSET_91f\" }",
            "rate_limit.redis.hash_key.env.BATTLEMENT_TEST_UNSET_91f",
        ),
        ("[api_key]\nrealm = \"x\"", "api_key.principals"),
        (
            "[circuit_breaker]\nconsecutive_failures = 0",
            "circuit_breaker.consecutive_failures",
        ),
        (
            "[client.retry]\nmax_retries = 100",
            "client.retry.max_retries",
        ),
        (
            "[client.retry.budget]\nwindow = \"1h\"",
            "client.retry.budget.window",
        ),
        ("[client]\ntimeout = 5", "client.timeout"),
        (
            "trusted_proxies = [\"10.0.0.0/8\", \"nope\"]",
            "trusted_proxies",
        ),
    ];
    for (text, field) in cases {
        let err = error_of(text);
        assert!(
            err.field() == *field || err.field().starts_with(&format!("{field}[")),
            "{text:?}: expected {field}, got {err}"
        );
    }
    // A hash key of the wrong length: the error gives the length, never the key.
    let err = error_of(
        "[rate_limit.redis]\nurl = \"redis://r\"\nhash_key = \"00112233445566778899aabbccddee\"",
    );
    assert_eq!(err.field(), "rate_limit.redis.hash_key", "{err}");
    assert!(err.reason().contains("found 15 bytes"), "{err}");
    assert!(!err.to_string().contains("0011223344"), "{err}");
    let err = error_of("[cors]\nallow_origins = [\"*\"]\nallow_credentials = true");
    assert_eq!(err.kind(), ConfigErrorKind::Unsafe);
}

/// `hash_key` keys the fingerprints; without it the audit warns about the public default.
#[test]
fn redis_hash_key_is_audited_and_used() {
    let url = temp_file("hk-url", "rediss://:pw@redis.internal:6380/0");
    let key = temp_file("hk-key", "base64:AAECAwQFBgcICQoLDA0ODw==");
    let without = format!(
        "[rate_limit.redis]\nurl = {{ file = {:?} }}",
        url.display().to_string()
    );
    let with = format!(
        "{without}\nhash_key = {{ file = {:?} }}",
        key.display().to_string()
    );
    let warned = |text: &str| {
        audit(&ServerConfig::from_toml_str(text).unwrap())
            .check("redis")
            .any(|i| i.field == "rate_limit.redis.hash_key" && i.status == AuditStatus::Warn)
    };
    assert!(warned(&without));
    assert!(!warned(&with));

    #[cfg(all(feature = "redis", feature = "redis-tls"))]
    {
        use std::hash::BuildHasher;

        use battlement::{rate_limit::RateLimitStore, redis::StableKeyHasher};

        let fingerprint = |text: &str| {
            let stack =
                ServerStack::from_config(&ServerConfig::from_toml_str(text).unwrap()).unwrap();
            let store = stack.rate_limit_store().unwrap();
            assert!(store.is_shared());
            store.key_hasher().hash_one(("key", 7u64))
        };
        let configured = StableKeyHasher::new(std::array::from_fn(|i| i as u8));
        assert_eq!(fingerprint(&with), configured.hash_one(("key", 7u64)));
        assert_ne!(fingerprint(&without), fingerprint(&with));
    }
}

#[test]
fn the_audit_flags_each_weak_setting() {
    let short = temp_file("short", &"ab".repeat(16));
    let short = short.display().to_string();
    let cases: Vec<(String, &str, AuditStatus)> = vec![
        (
            "[rate_limit]\nenabled = false".into(),
            "rate_limit",
            AuditStatus::Fail,
        ),
        (
            "[rate_limit.per_ip]\nenabled = false".into(),
            "rate_limit",
            AuditStatus::Fail,
        ),
        (
            "[cors]\nallow_origins = [\"*\"]".into(),
            "cors",
            AuditStatus::Fail,
        ),
        (
            "[cors]\nallow_origins = [\"http://app.example.com\"]".into(),
            "cors",
            AuditStatus::Warn,
        ),
        (
            "[security_headers]\nhsts_max_age = \"180d\"".into(),
            "hsts",
            AuditStatus::Warn,
        ),
        (
            "[security_headers]\nenabled = false".into(),
            "security_headers",
            AuditStatus::Fail,
        ),
        (
            format!("[[signing.keys]]\nid = \"k\"\nsecret = {{ file = {short:?} }}"),
            "signing_secret",
            AuditStatus::Fail,
        ),
        (
            format!("[client.signing]\nkey_id = \"k\"\nsecret = {{ file = {short:?} }}"),
            "signing_secret",
            AuditStatus::Fail,
        ),
        (
            format!(
                "[[signing.keys]]\nid = \"k\"\nsecret = \"{}\"",
                "ab".repeat(32)
            ),
            "inline_secret",
            AuditStatus::Warn,
        ),
        (
            "[body_limit]\nmax = \"11MiB\"".into(),
            "body_limit",
            AuditStatus::Warn,
        ),
        (
            "[body_limit]\nenabled = false".into(),
            "body_limit",
            AuditStatus::Fail,
        ),
        (
            "[trace]\nlog_bodies = true".into(),
            "trace_bodies",
            AuditStatus::Fail,
        ),
        (
            "[trace]\nenabled = false".into(),
            "trace",
            AuditStatus::Warn,
        ),
        (
            "[client.retry.budget]\nenabled = false".into(),
            "client_retry_budget",
            AuditStatus::Warn,
        ),
        (
            "[client]\ntimeout = \"0s\"".into(),
            "client_timeout",
            AuditStatus::Fail,
        ),
        (
            "[client.circuit_breaker]\nenabled = false".into(),
            "client_circuit_breaker",
            AuditStatus::Warn,
        ),
        (
            "[rate_limit.redis]\nurl = \"redis://:pw@r:6379\"".into(),
            "redis",
            AuditStatus::Warn,
        ),
        (
            "[rate_limit.redis]\nurl = \"rediss://r:6379\"".into(),
            "redis",
            AuditStatus::Fail,
        ),
        (
            "[rate_limit.redis]\nurl = { env = \"X\" }\n\
             hash_key = \"000102030405060708090a0b0c0d0e0f\""
                .into(),
            "inline_secret",
            AuditStatus::Warn,
        ),
        (
            "trusted_proxies = [\"0.0.0.0/0\"]".into(),
            "trusted_proxies",
            AuditStatus::Fail,
        ),
        (
            "trusted_proxies = [\"::/0\"]".into(),
            "trusted_proxies",
            AuditStatus::Fail,
        ),
        (
            "[request_id]\ntrust_incoming = \"any\"".into(),
            "request_id",
            AuditStatus::Warn,
        ),
        (
            "[catch_panic]\nenabled = false".into(),
            "catch_panic",
            AuditStatus::Warn,
        ),
        (
            "[timeout]\nenabled = false".into(),
            "timeout",
            AuditStatus::Warn,
        ),
        ("[body_limit]\nmax = 0".into(), "config", AuditStatus::Fail),
    ];
    let base = audit(&ServerConfig::default());
    for (text, check, status) in &cases {
        let cfg = ServerConfig::from_toml_str(text).unwrap();
        let report = audit(&cfg);
        assert_eq!(report.status_of(check), Some(*status), "{text}\n{report}");
        // It is the setting that did it: the defaults pass that check (or warn less).
        assert!(
            base.status_of(check).unwrap_or(AuditStatus::Pass) < *status,
            "{text}"
        );
    }
    // The defaults: nothing fails; the text names each finding.
    assert!(!base.has_failures(), "{base}");
    assert_eq!(base.status_of("https"), Some(AuditStatus::Warn));
    let text =
        audit(&ServerConfig::from_toml_str("[rate_limit]\nenabled = false").unwrap()).to_string();
    assert!(text.contains("FAIL  rate_limit"), "{text}");
    // No secret in the report.
    let inline = audit(
        &ServerConfig::from_toml_str(&format!(
            "[[signing.keys]]\nid = \"k\"\nsecret = \"{}\"",
            "ab".repeat(32)
        ))
        .unwrap(),
    );
    assert!(!inline.to_string().contains("abab") && !inline.to_json().contains("abab"));
}

fn peer(req: &mut Request<Body>, addr: [u8; 4]) {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((addr, 40_000))));
}

fn get_req(uri: &str) -> Request<Body> {
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    peer(&mut req, [192, 0, 2, 1]);
    req
}

fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|Extension(id): Extension<RequestId>| async move { id.as_str().to_owned() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/panic", get(panicking))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/me",
            get(|Extension(p): Extension<Principal>| async move { p.id().to_string() }),
        )
}

async fn panicking() -> &'static str {
    panic!("internal detail 7f3a")
}

async fn body_text(res: Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn router_layer_serves_the_default_stack() {
    // `Router::layer` accepts the stack (its bounds: Clone + Send + Sync + 'static, Infallible).
    let app = app().layer(ServerStack::new());
    let res = app.clone().oneshot(get_req("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(body_text(res).await, id, "the handler sees the same id");

    let mut big = Request::post("/echo")
        .body(Body::from(vec![b'x'; 2 << 20]))
        .unwrap();
    peer(&mut big, [192, 0, 2, 1]);
    let res = app.clone().oneshot(big).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    let res = app.clone().oneshot(get_req("/panic")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(res.headers().contains_key("x-request-id"));
    let text = body_text(res).await;
    assert!(
        !text.contains("7f3a") && text.contains("request_id"),
        "{text}"
    );
}

#[tokio::test]
async fn wrap_from_config_rate_limits_times_out_and_does_cors() {
    let cfg = ServerConfig::from_toml_str(
        r#"
        [rate_limit.per_ip]
        requests = 2
        burst = 2
        [timeout]
        request = "100ms"
        [cors]
        allow_origins = ["https://app.example.com"]
        "#,
    )
    .unwrap();
    let app = Stack::from_config(&cfg).unwrap().wrap(app());
    for _ in 0..2 {
        assert_eq!(
            app.clone().oneshot(get_req("/")).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let res = app.clone().oneshot(get_req("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert!(res.headers().contains_key("x-request-id"));
    // Another client has its own quota.
    let mut other = get_req("/slow");
    peer(&mut other, [192, 0, 2, 2]);
    let res = app.clone().oneshot(other).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    let mut pre = Request::options("/")
        .header(header::ORIGIN, "https://app.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    peer(&mut pre, [192, 0, 2, 3]);
    let res = app.clone().oneshot(pre).await.unwrap();
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let mut evil = Request::get("/")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    peer(&mut evil, [192, 0, 2, 3]);
    let res = app.oneshot(evil).await.unwrap();
    assert!(
        !res.headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}

#[tokio::test]
async fn api_key_then_per_principal_limit() {
    let hash = hash_key("demo-key-1").to_hex();
    let cfg = ServerConfig::from_toml_str(&format!(
        r#"
        [api_key]
        header = "x-api-key"
        [[api_key.principals]]
        id = "alice"
        keys = ["{hash}"]
        [rate_limit.per_principal]
        requests = 1
        burst = 1
        "#
    ))
    .unwrap();
    let app = Stack::from_config(&cfg).unwrap().wrap(app());
    let res = app.clone().oneshot(get_req("/me")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    let with_key = |ip: [u8; 4]| {
        let mut r = Request::get("/me")
            .header("x-api-key", "demo-key-1")
            .body(Body::empty())
            .unwrap();
        peer(&mut r, ip);
        r
    };
    let res = app.clone().oneshot(with_key([192, 0, 2, 9])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res).await, "alice");
    // Same principal from another address: the per-principal quota is spent.
    let res = app.oneshot(with_key([192, 0, 2, 10])).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn everything_off_is_the_bare_router() {
    let cfg = ServerConfig::from_toml_str(
        r#"
        [request_id]
        enabled = false
        [trace]
        enabled = false
        [catch_panic]
        enabled = false
        [security_headers]
        enabled = false
        [body_limit]
        enabled = false
        [rate_limit]
        enabled = false
        [timeout]
        enabled = false
        [client.circuit_breaker]
        enabled = false
        "#,
    )
    .unwrap();
    let stack = ServerStack::from_config(&cfg).unwrap();
    assert!(stack.enabled().is_empty());
    let router = Router::new().route("/", get(|| async { "hi" }));
    let res = stack
        .wrap(router)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("x-request-id"));
    assert!(!res.headers().contains_key("x-content-type-options"));
}

/// The stack composes the default parts in one of three ways (all on; some off; with parts
/// beyond the defaults): each gives the same response headers for what is on.
#[tokio::test]
async fn the_three_compositions_answer_alike() {
    let names = |res: &Response<Body>| {
        let mut names: Vec<String> = res
            .headers()
            .keys()
            // Values that differ per response, and CORS's own `vary`.
            .filter(|n| !["x-request-id", "ratelimit", "vary"].contains(&n.as_str()))
            .map(|n| n.as_str().to_owned())
            .collect();
        names.sort();
        names
    };
    let mut answers = Vec::new();
    for extra in [
        "",
        "[timeout]\nenabled = false",
        "[cors]\nallow_origins = [\"https://app.example\"]",
    ] {
        let cfg = ServerConfig::from_toml_str(extra).unwrap();
        let stack = ServerStack::from_config(&cfg).unwrap();
        let app = stack.wrap(app());
        let res = app.clone().oneshot(get_req("/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{extra}");
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(res.headers()["ratelimit"].to_str().unwrap().contains(";r="));
        let header_names = names(&res);
        assert_eq!(
            body_text(res).await,
            id,
            "{extra}: the handler sees the same id"
        );
        let res = app.oneshot(get_req("/panic")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{extra}");
        assert!(res.headers().contains_key("x-request-id"), "{extra}");
        answers.push(header_names);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

/// Over a real loopback socket, one connection per request: the peer address comes from
/// `ConnectInfo`, so the per-IP limit holds.
#[tokio::test]
async fn real_socket_rate_limit() {
    let cfg = ServerConfig::from_toml_str("[rate_limit.per_ip]\nrequests = 3\nburst = 3").unwrap();
    let app = Stack::from_config(&cfg)
        .unwrap()
        .wrap(Router::new().route("/", get(|| async { "ok" })));
    let addr = serve::serve(app).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.to_ascii_lowercase().contains("x-request-id:"),
            "{text}"
        );
        statuses.push(text[9..12].to_owned());
    }
    assert_eq!(statuses, ["200", "200", "200", "429", "429"]);
}

#[tokio::test(start_paused = true)]
async fn client_stack_retries_forwards_the_id_and_times_out() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let upstream = service_fn(
        move |req: Request<battlement::retry::ReplayBody<Empty<Bytes>>>| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(req.headers()["x-request-id"], "req-1");
                if n == 0 {
                    // First attempt hangs past the per-attempt timeout.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                let status = if n == 1 { 503 } else { 200 };
                let mut res = Response::new(Empty::<Bytes>::new());
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(res)
            }
        },
    );
    let cfg = ServerConfig::from_toml_str("[client]\ntimeout = \"1s\"").unwrap();
    let client = ClientStack::from_config(&cfg.client)
        .unwrap()
        .layer(upstream);
    let id = RequestId::new(http::HeaderValue::from_static("req-1")).unwrap();
    let res = id
        .scope(
            client.oneshot(
                Request::get("http://up.example/")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(ClientStack::from_config(&ClientConfig::default()).is_ok());
}
