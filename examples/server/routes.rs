//! The application router: the demo routes and their per-route layers. The whole-app stack is
//! not here: `main` wraps this router in `battlement::Stack`.

use std::net::SocketAddr;

use axum::{
    Extension, Json, Router,
    http::{HeaderMap, StatusCode},
    response::Html,
    routing::{get, post},
};
use battlement::{
    ConfigError,
    auth::api_key::{
        ApiKeyLayer, ApiKeys, ENV_API_KEY_HASHES, Principal, PrincipalId, generate_key,
    },
    body_limit::BodyLimitLayer,
    net::TrustedProxies,
    rate_limit::{ExtensionKey, Limit, Quota, RateLimitLayer},
    request_id::RequestId,
    security_headers::{ContentSecurityPolicy, CspNonce, SecurityHeaders},
    signing::{Key, KeyRing, VerifiedSignature, VerifyPolicy, VerifySignatureLayer},
    stack::ServerConfig,
};
use serde_json::{Value, json};
use tower::ServiceBuilder;

use crate::ClientHint;

/// The body limit of `POST /api/echo`, below the stack's limit for every route.
const ECHO_LIMIT: u64 = 4096;

/// The environment variables of the `/signed/*` key (the client example reads the same).
const SIGNING_KEY_ID_VAR: &str = "BATTLEMENT_SIGNING_KEY_ID";
const SIGNING_SECRET_VAR: &str = "BATTLEMENT_SIGNING_SECRET";

/// The application, with the per-route layers of the demo:
///
/// - `/keyed/*`: an API key, then a rate limit per principal, unless the configuration's
///   `[api_key]` already authenticates every route (the stack then does both);
/// - `/signed/*`: an RFC 9421 signature, unless the configuration's `[signing]` already
///   verifies every route;
/// - `POST /api/echo`: a 4 KiB body limit;
/// - `GET /`: a CSP with a per-response nonce (the stack's headers keep it);
/// - `GET /noop` and `GET /healthz`: nothing at all, so that a load test of `/noop` measures
///   the stack alone.
///
/// With `noop_headers` (the `--baseline headers` load-test baseline), `GET /noop` sets those
/// headers itself.
///
/// What `cargo run --example client` needs to call the per-route layers (the key made for the
/// run, the signing key) goes into `hint`, which `main` prints as one command.
pub(crate) fn router(
    config: &ServerConfig,
    addr: SocketAddr,
    noop_headers: Option<HeaderMap>,
    hint: &mut ClientHint,
) -> Result<Router, ConfigError> {
    let trusted = TrustedProxies::new(config.trusted_proxies.iter().map(String::as_str))
        .map_err(|e| e.within("trusted_proxies"))?;

    let keyed = Router::new().route("/me", get(whoami));
    let keyed = if config.api_key.is_some() {
        keyed
    } else {
        let q = &config.rate_limit.per_principal;
        let quota = Quota::try_new(q.requests, q.per.get())
            .and_then(|quota| quota.try_with_burst(q.burst.unwrap_or(q.requests)))
            .map_err(|e| e.within("rate_limit.per_principal"))?;
        keyed.layer(
            ServiceBuilder::new()
                .layer(ApiKeyLayer::new(api_keys(addr, hint)?).trusted_proxies(trusted))
                .layer(RateLimitLayer::new(Limit::new(
                    ExtensionKey::<Principal>::new(),
                    quota,
                ))),
        )
    };

    let signed = Router::new()
        .route("/orders", post(create_order))
        .route("/status", get(signed_status));
    let signed = if config.signing.is_some() {
        signed
    } else {
        let (ring, policy) = signing(hint)?;
        signed.layer(VerifySignatureLayer::with_policy(ring, policy))
    };

    let api = Router::new()
        .route("/hello", get(hello))
        .route("/echo", post(echo).layer(BodyLimitLayer::new(ECHO_LIMIT)));

    // Only the CSP, with a nonce: the stack adds the other headers and keeps this one.
    let page_csp = SecurityHeaders::empty()
        .content_security_policy(ContentSecurityPolicy::web().with_nonce())
        .layer();

    Ok(Router::new()
        .route("/", get(page).layer(page_csp))
        .route(
            "/noop",
            match noop_headers {
                None => get(noop),
                Some(headers) => get(move || std::future::ready(headers.clone())),
            },
        )
        .route("/healthz", get(healthz))
        .route("/panic", get(panic))
        .nest("/api", api)
        .nest("/keyed", keyed)
        .nest("/signed", signed))
}

/// The accepted API keys of `/keyed/*`: `BATTLEMENT_API_KEY_HASHES`, or one key made for this
/// run and printed once on the terminal (development only).
fn api_keys(addr: SocketAddr, hint: &mut ClientHint) -> Result<ApiKeys, ConfigError> {
    if std::env::var_os(ENV_API_KEY_HASHES).is_some() {
        hint.notes.push(format!(
            "/keyed/me: add BATTLEMENT_API_KEY=<a key whose hash is in {ENV_API_KEY_HASHES}>"
        ));
        return ApiKeys::from_env_hashes(ENV_API_KEY_HASHES);
    }
    let generated = generate_key("demo_")?;
    let principal = Principal::with_scopes(PrincipalId::new("demo")?, ["demo"], None)?;
    let keys = ApiKeys::builder()
        .key(generated.hash(), &principal)
        .build()?;
    println!(
        "dev: no {ENV_API_KEY_HASHES}: /keyed/* accepts the key made for this run: \
         curl -H 'authorization: Bearer {key}' http://{addr}/keyed/me",
        key = generated.key()
    );
    hint.api_key = Some(crate::sh_word(generated.key()));
    Ok(keys)
}

/// The key ring of `/signed/*`: the environment, or a key made for this run.
fn signing(hint: &mut ClientHint) -> Result<(KeyRing, VerifyPolicy), ConfigError> {
    if std::env::var_os(SIGNING_KEY_ID_VAR).is_some()
        || std::env::var_os(SIGNING_SECRET_VAR).is_some()
    {
        let ring = KeyRing::from_env(SIGNING_KEY_ID_VAR, SIGNING_SECRET_VAR)?;
        // The client reads the same variables: the command names them (no secret printed).
        hint.signing = Some((
            format!("\"${SIGNING_KEY_ID_VAR}\""),
            format!("\"${SIGNING_SECRET_VAR}\""),
        ));
        return Ok((ring, VerifyPolicy::new()));
    }
    let secret = crate::random_secret("signing")?;
    let hex = crate::hex(&secret);
    println!(
        "dev: no signing key configured: /signed/* verifies key id \"demo\" with a secret made \
         for this run (in the client command below)"
    );
    hint.signing = Some(("demo".to_owned(), hex));
    Ok((
        KeyRing::new(Key::hmac_sha256("demo", &secret)?),
        VerifyPolicy::new(),
    ))
}

/// The target of the end-to-end load test: 200 with an empty body, nothing else.
async fn noop() {}

async fn healthz() -> &'static str {
    "ok"
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
    Json(json!({ "message": "hello", "request_id": id.as_str() }))
}

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "echo": body }))
}

async fn panic() -> &'static str {
    panic!("a handler bug: the client gets a 500 problem without the panic message")
}
