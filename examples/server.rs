//! A real axum server wrapped in every battlement layer, on its embedded secure defaults.
//!
//! ```sh
//! cargo run --example server                              # 127.0.0.1:3000, embedded defaults
//! BATTLEMENT_ADDR=127.0.0.1:8080 cargo run --example server
//! cargo run --example server -- examples/server.toml      # settings from a TOML file
//! BATTLEMENT_REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example server
//! ```
//!
//! Routes:
//! - `GET /`: an HTML page whose inline script runs only because it carries this response's CSP
//!   nonce.
//! - `GET /api/hello`: a JSON answer that includes the request id.
//! - `POST /api/echo`: echoes a JSON body (a smaller body limit on this one route).
//! - `GET /keyed/me`: needs an API key (`Authorization: Bearer …`), rate-limited per principal.
//!   Key hashes come from `[api_keys] hashes` or `BATTLEMENT_API_KEY_HASHES` (comma-separated
//!   hex SHA-256); with neither, a key is made for the run and printed once at start.
//! - `POST /signed/orders`, `GET /signed/status`: need an RFC 9421 `hmac-sha256` signature
//!   (with `Content-Digest` when there is a body). The key comes from `[signing]` in the file or
//!   `BATTLEMENT_SIGNING_KEY_ID` + `BATTLEMENT_SIGNING_SECRET` (hex); with neither, a key is made
//!   for the run and printed once. `cargo run --example client` signs its calls to these routes.
//! - `GET /healthz`: a health check, exempt from the HTTPS redirect.
//! - `GET /panic`: a handler bug, answered with a 500 problem that leaks nothing.
//!
//! Every route is rate-limited per client address (behind `trusted_proxies` only); the quota
//! comes from `[rate_limit]` or `BATTLEMENT_RATE_PER_MINUTE` / `BATTLEMENT_RATE_BURST`.
//!
//! Try:
//!
//! ```sh
//! curl -i http://127.0.0.1:3000/api/hello
//! curl -i -H 'x-request-id: my-id-1' http://127.0.0.1:3000/api/hello
//! curl -i -X POST -H 'content-type: application/json' --data-binary @big.json http://127.0.0.1:3000/api/echo
//! ```

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use axum::{
    Extension, Json, Router,
    http::StatusCode,
    response::Html,
    routing::{get, post},
};
use battlement::{
    ConfigError, ConfigErrorKind,
    auth::api_key::{
        ApiKeyLayer, ApiKeys, ENV_API_KEY_HASHES, Principal, PrincipalId, generate_key,
    },
    body_limit::BodyLimitLayer,
    https::HttpsRedirectLayer,
    net::TrustedProxies,
    problem::{Problem, ProblemType},
    rate_limit::{ClientIp, ExtensionKey, Limit, Quota, RateLimitLayer},
    request_id::{RequestId, SetRequestIdLayer},
    security_headers::{ContentSecurityPolicy, CspNonce, Hsts, SecurityHeaders},
    signing::{Key, KeyRing, SigningConfig, VerifiedSignature, VerifyPolicy, VerifySignatureLayer},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceBuilder;
#[cfg(feature = "redis")]
use tower::util::Either;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

/// The example's settings; every field has a secure default, unknown keys are rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    addr: SocketAddr,
    trusted_proxies: Vec<String>,
    request_id: RequestIdSettings,
    security_headers: SecurityHeadersSettings,
    https: HttpsSettings,
    body_limit: BodyLimitSettings,
    rate_limit: RateLimitSettings,
    api_keys: ApiKeySettings,
    signing: Option<SigningConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            trusted_proxies: Vec::new(),
            request_id: RequestIdSettings::default(),
            security_headers: SecurityHeadersSettings::default(),
            https: HttpsSettings::default(),
            body_limit: BodyLimitSettings::default(),
            rate_limit: RateLimitSettings::default(),
            api_keys: ApiKeySettings::default(),
            signing: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RequestIdSettings {
    header: String,
    traceparent: bool,
}

impl Default for RequestIdSettings {
    fn default() -> Self {
        Self {
            header: "x-request-id".to_owned(),
            traceparent: false,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Preset {
    Web,
    Api,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SecurityHeadersSettings {
    preset: Preset,
    hsts_max_age: u64,
    hsts_preload: bool,
}

impl Default for SecurityHeadersSettings {
    fn default() -> Self {
        Self {
            preset: Preset::Web,
            hsts_max_age: 31_536_000,
            hsts_preload: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpsSettings {
    redirect: bool,
    allowed_hosts: Vec<String>,
    exempt_paths: Vec<String>,
}

impl Default for HttpsSettings {
    fn default() -> Self {
        Self {
            redirect: false,
            allowed_hosts: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            exempt_paths: vec!["/healthz".to_owned()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BodyLimitSettings {
    default: u64,
    echo: u64,
}

impl Default for BodyLimitSettings {
    fn default() -> Self {
        Self {
            default: 1024 * 1024,
            echo: 4096,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RateLimitSettings {
    per_ip_per_minute: u32,
    per_ip_burst: u32,
    per_key_per_minute: u32,
    per_key_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 600,
            per_ip_burst: 60,
            per_key_per_minute: 100,
            per_key_burst: 10,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ApiKeySettings {
    /// Hex SHA-256 hashes of the accepted keys (`battlement::auth::api_key::hash_key`).
    hashes: Vec<String>,
}

fn load_settings() -> Result<Settings, String> {
    let mut args = std::env::args_os().skip(1);
    let mut settings = match args.next() {
        None => Settings::default(),
        Some(flag) if flag == "--config" => {
            let path = args.next().ok_or("--config needs a file name")?;
            read_settings(PathBuf::from(path))?
        }
        Some(path) => read_settings(PathBuf::from(path))?,
    };
    for (var, field) in [
        (
            "BATTLEMENT_RATE_PER_MINUTE",
            &mut settings.rate_limit.per_ip_per_minute,
        ),
        (
            "BATTLEMENT_RATE_BURST",
            &mut settings.rate_limit.per_ip_burst,
        ),
    ] {
        if let Some(value) = std::env::var_os(var) {
            let value = value.to_string_lossy();
            *field = value
                .parse()
                .map_err(|e| format!("{var}={value:?} is not a whole number: {e}"))?;
        }
    }
    if let Some(addr) = std::env::var_os("BATTLEMENT_ADDR") {
        let addr = addr.to_string_lossy();
        settings.addr = addr
            .parse()
            .map_err(|e| format!("BATTLEMENT_ADDR={addr:?} is not a socket address: {e}"))?;
    }
    Ok(settings)
}

fn read_settings(path: PathBuf) -> Result<Settings, String> {
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Wraps the application router in the whole stack, outermost first (DESIGN.md §3).
fn build_app(
    settings: &Settings,
    keys: ApiKeys,
    (ring, policy): (KeyRing, VerifyPolicy),
    redis: Option<RedisHandle>,
) -> Result<Router, ConfigError> {
    let trusted = TrustedProxies::new(settings.trusted_proxies.iter().map(String::as_str))
        .map_err(|e| e.within("trusted_proxies"))?;
    let trusted_for_limits = trusted.clone();

    let request_id = SetRequestIdLayer::new()
        .try_header(&settings.request_id.header)
        .map_err(|e| e.within("request_id"))?
        .trust_incoming_from(trusted.clone())
        .use_traceparent(settings.request_id.traceparent);

    let mut hsts = Hsts::new().max_age(settings.security_headers.hsts_max_age);
    if settings.security_headers.hsts_preload {
        hsts = hsts.preload();
    }
    let headers = match settings.security_headers.preset {
        // The HTML page's inline script runs only with this response's nonce.
        Preset::Web => SecurityHeaders::web()
            .content_security_policy(ContentSecurityPolicy::web().with_nonce()),
        Preset::Api => SecurityHeaders::api(),
    }
    .hsts(hsts)
    .map_err(|e| e.within("security_headers"))?
    .trusted_proxies(trusted.clone());

    let https = if settings.https.redirect {
        let mut layer = HttpsRedirectLayer::new(settings.https.allowed_hosts.iter())
            .map_err(|e| e.within("https"))?
            .trusted_proxies(trusted.clone());
        for path in &settings.https.exempt_paths {
            layer = layer.exempt_path(path).map_err(|e| e.within("https"))?;
        }
        Some(layer)
    } else {
        None
    };

    let rl = &settings.rate_limit;
    // Fixed limit ids: instances sharing a Redis store share a limit only when the ids match.
    let per_ip = Limit::new(
        ClientIp::new(trusted_for_limits),
        quota(rl.per_ip_per_minute, rl.per_ip_burst).map_err(|e| e.within("rate_limit.per_ip"))?,
    )
    .with_id(1);
    let per_key = Limit::new(
        ExtensionKey::<Principal>::new(),
        quota(rl.per_key_per_minute, rl.per_key_burst)
            .map_err(|e| e.within("rate_limit.per_key"))?,
    )
    .with_id(2);

    // With `BATTLEMENT_REDIS_URL` (and the `redis` feature), the per-IP limit and the replay
    // nonces live in Redis, shared by every instance; otherwise in memory.
    #[cfg(feature = "redis")]
    let (per_ip_layer, verify) = match redis {
        Some(redis) => (
            Either::Left(RateLimitLayer::new(per_ip).with_store(redis.rate_limit_store())),
            Either::Left(
                VerifySignatureLayer::with_policy(ring, policy)
                    .with_replay_store(redis.replay_store()),
            ),
        ),
        None => (
            Either::Right(RateLimitLayer::new(per_ip)),
            Either::Right(VerifySignatureLayer::with_policy(ring, policy)),
        ),
    };
    #[cfg(not(feature = "redis"))]
    let (per_ip_layer, verify) = {
        let _: Option<()> = redis;
        (
            RateLimitLayer::new(per_ip),
            VerifySignatureLayer::with_policy(ring, policy),
        )
    };

    // `/keyed/*` needs an API key; its principal then has its own rate limit.
    let keyed = Router::new().route("/me", get(whoami)).layer(
        ServiceBuilder::new()
            .layer(ApiKeyLayer::new(keys).trusted_proxies(trusted.clone()))
            .layer(RateLimitLayer::new(per_key)),
    );

    // `/signed/*` needs an RFC 9421 signature (and `Content-Digest` over any body).
    let signed = Router::new()
        .route("/orders", post(create_order))
        .route("/status", get(signed_status))
        .layer(verify);

    let api = Router::new().route("/hello", get(hello)).route(
        "/echo",
        post(echo).layer(BodyLimitLayer::new(settings.body_limit.echo)),
    );
    let app = Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/panic", get(panic))
        .nest("/api", api)
        .nest("/keyed", keyed)
        .nest("/signed", signed);

    Ok(app.layer(
        ServiceBuilder::new()
            .layer(request_id)
            .layer(TraceLayer::new_for_http())
            .layer(CatchPanicLayer::custom(|_| {
                Problem::new(ProblemType::INTERNAL_ERROR)
                    .with_request_id(RequestId::current())
                    .into_response::<axum::body::Body>()
            }))
            .layer(headers.layer())
            .option_layer(https)
            .layer(
                BodyLimitLayer::new(settings.body_limit.default)
                    .max_route_limit(settings.body_limit.default.max(settings.body_limit.echo)),
            )
            .layer(per_ip_layer),
    ))
}

#[cfg(feature = "redis")]
type RedisHandle = battlement::redis::RedisConnection;
#[cfg(not(feature = "redis"))]
type RedisHandle = ();

/// The Redis connection when `BATTLEMENT_REDIS_URL` is set. It connects lazily: the server
/// starts while Redis is down and falls back to the in-memory limiter until it is up.
fn redis_from_env() -> Result<Option<RedisHandle>, String> {
    let Some(url) = std::env::var_os("BATTLEMENT_REDIS_URL") else {
        return Ok(None);
    };
    #[cfg(feature = "redis")]
    {
        use battlement::redis::{RedisConfig, RedisConnection};
        let url = url.to_string_lossy();
        let config = RedisConfig::new()
            .with_prefix("battlement-example")
            .map_err(|e| e.to_string())?;
        let redis = RedisConnection::connect_lazy(&url, config).map_err(|e| e.to_string())?;
        tracing::info!("rate limits and replay nonces in Redis");
        Ok(Some(redis))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("BATTLEMENT_REDIS_URL is set: run with `--features redis`".to_owned())
    }
}

fn quota(per_minute: u32, burst: u32) -> Result<Quota, ConfigError> {
    Quota::try_new(per_minute, Duration::from_secs(60))?.try_with_burst(burst)
}

/// The accepted API keys: the configured hashes, or one key made for this run and printed once
/// on the terminal (development only: configure hashes in production).
fn api_keys(settings: &ApiKeySettings) -> Result<ApiKeys, ConfigError> {
    if std::env::var_os(ENV_API_KEY_HASHES).is_some() {
        return ApiKeys::from_env_hashes(ENV_API_KEY_HASHES);
    }
    if !settings.hashes.is_empty() {
        return ApiKeys::from_hash_list(&settings.hashes.join(","))
            .map_err(|e| e.within("api_keys.hashes"));
    }
    let generated = generate_key("demo_")?;
    let principal = Principal::with_scopes(PrincipalId::new("demo")?, ["demo"], None)?;
    let keys = ApiKeys::builder()
        .key(generated.hash(), &principal)
        .build()?;
    println!(
        "no api_keys.hashes configured: this run accepts the key {} (try: curl -H 'authorization: Bearer {}' http://ADDR/keyed/me)",
        generated.key(),
        generated.key()
    );
    Ok(keys)
}

/// The signing key ring and policy: the environment, then the file, then a key for this run.
fn signing(settings: Option<&SigningConfig>) -> Result<(KeyRing, VerifyPolicy), ConfigError> {
    const ID_VAR: &str = "BATTLEMENT_SIGNING_KEY_ID";
    const SECRET_VAR: &str = "BATTLEMENT_SIGNING_SECRET";
    let policy = match settings {
        Some(s) => s.policy().map_err(|e| e.within("signing"))?,
        None => VerifyPolicy::new(),
    };
    if std::env::var_os(ID_VAR).is_some() || std::env::var_os(SECRET_VAR).is_some() {
        return Ok((KeyRing::from_env(ID_VAR, SECRET_VAR)?, policy));
    }
    if let Some(s) = settings {
        return Ok((s.key_ring().map_err(|e| e.within("signing"))?, policy));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|_| ConfigError::new(ConfigErrorKind::Invalid, "signing", "no OS randomness"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "no signing key configured: this run verifies key id \"demo\" with a secret made for it; \
         sign with: {ID_VAR}=demo {SECRET_VAR}={hex} cargo run --example client"
    );
    Ok((KeyRing::new(Key::hmac_sha256("demo", &secret)?), policy))
}

async fn create_order(
    Extension(sig): Extension<VerifiedSignature>,
    Json(order): Json<Value>,
) -> (StatusCode, Json<Value>) {
    tracing::info!(key_id = sig.key_id(), "signed order accepted");
    (
        StatusCode::CREATED,
        Json(json!({ "accepted": order, "signed_by": sig.key_id() })),
    )
}

async fn signed_status(Extension(sig): Extension<VerifiedSignature>) -> Json<Value> {
    Json(json!({ "status": "ok", "signed_by": sig.key_id() }))
}

async fn whoami(Extension(who): Extension<Principal>) -> Json<Value> {
    tracing::info!(principal = %who.id(), "private data served");
    Json(json!({ "principal": who.id().to_string(), "scopes": who.scopes().collect::<Vec<_>>() }))
}

async fn page(Extension(nonce): Extension<CspNonce>) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>battlement</title></head>
<body>
<h1>battlement example</h1>
<p id="out">This text is replaced by an inline script that runs only because it carries this
response's CSP nonce.</p>
<script nonce="{nonce}">
  fetch("/api/hello").then(r => r.json()).then(j => {{
    document.getElementById("out").textContent = "request id of /api/hello: " + j.request_id;
  }});
</script>
<script>document.body.append("an inline script without the nonce ran: CSP is broken")</script>
</body>
</html>"#
    ))
}

async fn hello(Extension(id): Extension<RequestId>) -> Json<Value> {
    tracing::info!("saying hello");
    Json(json!({ "message": "hello", "request_id": id.as_str() }))
}

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "echo": body }))
}

async fn panic() -> &'static str {
    panic!("a handler bug: the client gets a 500 problem without the panic message")
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,battlement=debug".into()),
        )
        .init();

    let settings = match load_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let redis = match redis_from_env() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match api_keys(&settings.api_keys).and_then(|keys| {
        let signing = signing(settings.signing.as_ref())?;
        build_app(&settings, keys, signing, redis)
    }) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", settings.addr);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %settings.addr, "battlement example server listening");
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}
