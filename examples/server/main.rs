//! A real axum server wrapped in the whole battlement stack (`battlement::Stack`).
//!
//! ```sh
//! cargo run --example server                                # 127.0.0.1:3000, embedded defaults
//! cargo run --example server -- --config battlement.toml    # everything the file turns on
//! cargo run --example server -- --tls                       # + HTTPS on 127.0.0.1:3443
//! cargo run --example server -- --tls --cert cert.pem --key key.pem
//! cargo run --features metrics --example server             # + Prometheus on 127.0.0.1:9464
//! ```
//!
//! - No arguments: `ServerConfig::default()` (the secure production profile), with the
//!   `BATTLEMENT__SECTION__KEY` environment overrides (`BATTLEMENT__RATE_LIMIT__PER_IP__REQUESTS=100000`),
//!   adjusted for local development: the HTTPS redirect is off unless `--tls`.
//! - `--config FILE`: `ServerConfig::from_toml_file` (the same overrides apply); the audit is
//!   printed at start. A secret the file references that cannot be read (an unset
//!   environment variable, a missing file) is replaced by a value made for the run, and the
//!   server says so: `--config battlement.toml` starts on a fresh machine.
//! - `--tls`: HTTPS with rustls (ring) on `BATTLEMENT_TLS_ADDR` / `--tls-addr` (default
//!   `127.0.0.1:3443`), with a self-signed certificate for `localhost` and `127.0.0.1` made at
//!   start, or `--cert FILE --key FILE` (PEM). The plain port (`BATTLEMENT_ADDR` / `--addr`,
//!   default `127.0.0.1:3000`) then redirects to it (except `/healthz`), and HTTPS responses
//!   carry HSTS.
//! - `[server]` (`header_read_timeout`, default 10 s; `idle_timeout`, default 60 s): both
//!   listeners serve with these connection timeouts (`serve.rs`), so an idle connection, a
//!   half-sent request head or a trickle of bytes is closed.
//! - Feature `metrics`: the crate's counters and histograms in Prometheus format on
//!   `BATTLEMENT_METRICS_ADDR` (default `127.0.0.1:9464`), `/metrics`.
//! - `--baseline bare` / `--baseline headers`: the same router without the stack (with
//!   `headers`, `GET /noop` sets the headers the stack would set, captured at start): the
//!   reference points of an end-to-end load test of `/noop`, one process each (other routes
//!   that need the stack, such as `/api/hello` and its request id, fail there).
//!
//! Routes (the stack wraps them all; the per-route layers are in `routes.rs`):
//! - `GET /noop`: 200, empty body, nothing else (the target of load tests: the only cost is
//!   the stack's). At the default log level nothing is logged per request.
//! - `GET /healthz`: a health check, exempt from the HTTPS redirect.
//! - `GET /`: an HTML page whose inline script runs only because it carries this response's
//!   CSP nonce.
//! - `GET /api/hello`: JSON with the request id. `POST /api/echo`: echoes JSON, 4 KiB limit.
//! - `GET /keyed/me`: needs an API key (`Authorization: Bearer …`), rate-limited per
//!   principal. Key hashes from `BATTLEMENT_API_KEY_HASHES`; without it a key is made for the
//!   run and printed once.
//! - `POST /signed/orders`, `GET /signed/status`: need an RFC 9421 `hmac-sha256` signature.
//!   The key comes from `BATTLEMENT_SIGNING_KEY_ID` + `BATTLEMENT_SIGNING_SECRET` (hex), or is
//!   made for the run and printed once; `cargo run --example client` signs its calls.
//! - `GET /panic`: a handler bug, answered with a 500 problem that leaks nothing.
//!
//! With `[api_key]` or `[signing]` in the configuration file, the stack authenticates every
//! route, and the per-route layers of `/keyed` and `/signed` step aside.
//!
//! Try:
//!
//! ```sh
//! curl -i http://127.0.0.1:3000/api/hello
//! curl -ik https://127.0.0.1:3443/healthz            # with --tls: Strict-Transport-Security
//! curl -i http://127.0.0.1:3000/api/hello            # with --tls: 301 to https://…:3443
//! curl -s http://127.0.0.1:9464/metrics | grep battlement_
//! ```

mod routes;
mod serve;
mod tls;

#[cfg(feature = "metrics")]
mod metrics;

use std::{
    ffi::OsString,
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::OnceLock,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, Request, Uri, header},
    routing::get,
};
use battlement::{
    ConfigError, ConfigErrorKind, Stack,
    auth::api_key::{KeyConfig, PrincipalConfig, generate_key},
    config::SecretSource,
    stack::{AuditStatus, ServerConfig},
};

const USAGE: &str = "\
usage: server [--config FILE] [--tls [--cert FILE --key FILE]] [--addr ADDR] [--tls-addr ADDR]
              [--metrics-addr ADDR]

  --config FILE      read the stack's configuration (battlement.toml) and print its audit
  --tls              serve HTTPS too (a development certificate made at start), and redirect
                     the plain port to it
  --cert/--key FILE  PEM certificate chain and private key for --tls
  --addr ADDR        plain HTTP address (BATTLEMENT_ADDR, default 127.0.0.1:3000)
  --tls-addr ADDR    HTTPS address (BATTLEMENT_TLS_ADDR, default 127.0.0.1:3443)
  --metrics-addr ADDR  Prometheus address with --features metrics (BATTLEMENT_METRICS_ADDR,
                     default 127.0.0.1:9464)
  --baseline bare|headers  load-test reference points: the same router without the stack
                     (headers: GET /noop sets the stack's response headers itself)";

/// The command line, with the environment's addresses as defaults.
#[derive(Debug)]
struct Args {
    config: Option<PathBuf>,
    tls: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    addr: SocketAddr,
    tls_addr: SocketAddr,
    metrics_addr: SocketAddr,
    baseline: Option<Baseline>,
}

/// `--baseline`: the same router without the stack, for the end-to-end load test's reference
/// points (one process each, like the stacked server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Baseline {
    /// No middleware at all.
    Bare,
    /// No middleware; `GET /noop` sets the headers the stack would set (values captured from
    /// one request through the stack at start): the wire cost of the headers, without the
    /// middleware's work.
    Headers,
}

/// The arguments, or `None` for `--help`.
fn parse_args(mut it: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        tls: false,
        cert: None,
        key: None,
        addr: env_addr("BATTLEMENT_ADDR", 3000)?,
        tls_addr: env_addr("BATTLEMENT_TLS_ADDR", 3443)?,
        metrics_addr: env_addr("BATTLEMENT_METRICS_ADDR", 9464)?,
        baseline: None,
    };
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--config" => args.config = Some(value()?.into()),
            "--tls" => args.tls = true,
            "--cert" => args.cert = Some(value()?.into()),
            "--key" => args.key = Some(value()?.into()),
            "--addr" => args.addr = parse_addr(&arg, &value()?)?,
            "--tls-addr" => args.tls_addr = parse_addr(&arg, &value()?)?,
            "--metrics-addr" => args.metrics_addr = parse_addr(&arg, &value()?)?,
            "--baseline" => {
                args.baseline = Some(match value()?.to_str() {
                    Some("bare") => Baseline::Bare,
                    Some("headers") => Baseline::Headers,
                    _ => return Err(format!("--baseline takes bare or headers\n\n{USAGE}")),
                })
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown argument {arg:?}\n\n{USAGE}")),
        }
    }
    if args.cert.is_some() != args.key.is_some() {
        return Err("--cert and --key go together".to_owned());
    }
    // Certificate files mean TLS.
    args.tls |= args.cert.is_some();
    if args.tls && args.addr == args.tls_addr {
        return Err(format!(
            "the plain and TLS addresses are both {}",
            args.addr
        ));
    }
    Ok(Some(args))
}

fn env_addr(var: &str, port: u16) -> Result<SocketAddr, String> {
    match std::env::var_os(var) {
        Some(v) => parse_addr(var, &v),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
    }
}

fn parse_addr(what: &str, value: &std::ffi::OsStr) -> Result<SocketAddr, String> {
    let value = value.to_string_lossy();
    value
        .parse()
        .map_err(|e| format!("{what}={value:?} is not a socket address: {e}"))
}

/// The stack's configuration: embedded defaults (+ environment overrides) or the file, then
/// what this run needs locally.
fn load_config(args: &Args, hint: &mut ClientHint) -> Result<ServerConfig, ConfigError> {
    let mut config = match &args.config {
        None => {
            // The defaults, with the same `BATTLEMENT__SECTION__KEY` overrides as a file.
            let mut config = ServerConfig::from_toml_with_env("", std::env::vars())?;
            if args.tls {
                config.https.redirect = true;
                if config.https.allowed_hosts.is_empty() {
                    config.https.allowed_hosts = vec!["localhost".into(), "127.0.0.1".into()];
                }
                if config.https.exempt_paths.is_empty() {
                    config.https.exempt_paths = vec!["/healthz".into()];
                }
            }
            config
        }
        Some(path) => {
            let mut config = ServerConfig::from_toml_file(path)?;
            print_audit(&config, path);
            dev_secrets(&mut config, hint)?;
            config_hint(&config, path, hint);
            if config.https.redirect && !args.tls {
                println!(
                    "note: https.redirect is on and this run serves no TLS (add --tls): plain \
                     requests are redirected to https on port {}",
                    config.https.https_port.unwrap_or(443)
                );
            }
            if args.tls && !config.https.redirect {
                println!(
                    "note: https.redirect is off in {}: the plain port does not redirect",
                    path.display()
                );
            }
            config
        }
    };
    if args.tls && config.https.redirect {
        let port = args.tls_addr.port();
        let wanted = (port != 443).then_some(port);
        if config.https.https_port.is_some_and(|p| p != port) {
            println!("note: https.https_port set to {port}, the port of this run's TLS listener");
        }
        config.https.https_port = wanted;
    }
    Ok(config)
}

fn print_audit(config: &ServerConfig, path: &Path) {
    let audit = config.audit();
    println!(
        "audit of {} (as written, before development values):",
        path.display()
    );
    print!("{audit}");
    if audit.status_of("config") == Some(AuditStatus::Fail) {
        println!("(a secret the file references is missing here: development values follow)");
    }
}

/// Replaces each secret the configuration references but this machine does not have by a value
/// made for the run, and says so. Development only: in production a missing secret must stop
/// the server, which `Stack::from_config` does.
fn dev_secrets(config: &mut ServerConfig, hint: &mut ClientHint) -> Result<(), ConfigError> {
    if let Some(signing) = &mut config.signing {
        for (i, key) in signing.keys.iter_mut().enumerate() {
            if key.secret.resolve().is_ok() {
                continue;
            }
            let hex = hex(&random_secret("signing")?);
            println!(
                "dev: signing.keys[{i}] ({}): {} cannot be read; this run uses a secret made for \
                 it: BATTLEMENT_SIGNING_KEY_ID={} BATTLEMENT_SIGNING_SECRET={hex}",
                key.id,
                describe(&key.secret),
                key.id
            );
            if i == 0 {
                // The current key: the one the client signs with.
                hint.signing = Some((sh_word(&key.id), hex.clone()));
            }
            key.secret = SecretSource::Inline(zeroize::Zeroizing::new(hex));
        }
    }
    for (section, slot) in [
        ("redis", &mut config.redis),
        ("rate_limit.redis", &mut config.rate_limit.redis),
    ] {
        if let Some(redis) = slot.as_ref()
            && redis.url.resolve().is_err()
        {
            println!(
                "dev: {section}.url: {} cannot be read; this run keeps its rate limits and \
                 nonces in memory",
                describe(&redis.url)
            );
            *slot = None;
        }
        if let Some(redis) = slot
            && let Some(key) = &redis.hash_key
            && key.resolve().is_err()
        {
            let hex = hex(&random_secret("redis.hash_key")?[..16]);
            println!(
                "dev: {section}.hash_key: {} cannot be read; this run uses a key made for it \
                 (other instances will not share its buckets): BATTLEMENT_REDIS_HASH_KEY={hex}",
                describe(key)
            );
            redis.hash_key = Some(SecretSource::Inline(zeroize::Zeroizing::new(hex)));
        }
    }
    if let Some(api_key) = &mut config.api_key
        && let Some(var) = &api_key.hashes_env
        && std::env::var_os(var).is_none()
    {
        println!(
            "dev: api_key.hashes_env: {var} is unset; only the file's principals are accepted"
        );
        api_key.hashes_env = None;
    }
    if let Some(api_key) = &mut config.api_key {
        // The file holds hashes only: the client needs a key, so this run accepts one more,
        // made for it, for a principal of its own with the scopes every route requires.
        let generated = generate_key("dev_")?;
        let id = DEV_PRINCIPAL;
        if api_key.principals.iter().any(|p| p.id == id) {
            hint.notes.push(format!(
                "api_key: the file already has a principal {id:?}: no key made for this run; \
                 add BATTLEMENT_API_KEY=<one of the file's keys>"
            ));
        } else {
            api_key.principals.push(PrincipalConfig {
                id: id.to_owned(),
                scopes: api_key.require_scopes.clone(),
                expires_at: None,
                keys: vec![KeyConfig::Hash(generated.hash().to_hex())],
            });
            println!(
                "dev: [api_key]: this run also accepts a key made for it, principal {id:?} (in \
                 the client command below)"
            );
            hint.api_key = Some(sh_word(generated.key()));
        }
    }
    Ok(())
}

/// The principal of the API key a `--config` run makes for the client example.
const DEV_PRINCIPAL: &str = "dev-example-client";

/// With `[signing]` in the file, the stack verifies every route with the file's current key:
/// the client command names where its secret is (a development secret is already in `hint`).
fn config_hint(config: &ServerConfig, path: &Path, hint: &mut ClientHint) {
    let Some(signing) = &config.signing else {
        return;
    };
    if signing.assume_https {
        hint.notes.push(
            "signing.assume_https is on: signatures are checked against https:// URIs, which \
             this plain-HTTP client does not sign (set BATTLEMENT__SIGNING__ASSUME_HTTPS=false \
             for a local try)"
                .to_owned(),
        );
    }
    let Some(key) = signing.keys.first() else {
        return;
    };
    if hint.signing.is_some() {
        return;
    }
    let secret = match &key.secret {
        SecretSource::Env(var) => format!("\"${var}\""),
        SecretSource::File(file) => format!("\"$(cat {})\"", sh_word(&file.to_string_lossy())),
        _ => {
            // Not printed: a secret written in the file stays in the file.
            hint.notes.push(format!(
                "signing: key {:?} has its secret inline in {}: set BATTLEMENT_SIGNING_SECRET \
                 to it",
                key.id,
                path.display()
            ));
            "'<the secret of this key>'".to_owned()
        }
    };
    hint.signing = Some((sh_word(&key.id), secret));
}

/// What `cargo run --example client` needs to call this server, printed once as one command.
#[derive(Debug, Default)]
pub(crate) struct ClientHint {
    /// `BATTLEMENT_SIGNING_KEY_ID` and `BATTLEMENT_SIGNING_SECRET`, as shell words.
    pub(crate) signing: Option<(String, String)>,
    /// `BATTLEMENT_API_KEY`, as a shell word.
    pub(crate) api_key: Option<String>,
    /// What the command cannot say (a key this run does not know).
    pub(crate) notes: Vec<String>,
}

impl ClientHint {
    /// The command, for the server at `base` (`http://host:port`).
    fn command(&self, base: &str) -> String {
        let mut cmd = format!("BATTLEMENT_SERVER={base}");
        if let Some((id, secret)) = &self.signing {
            cmd += &format!(" BATTLEMENT_SIGNING_KEY_ID={id} BATTLEMENT_SIGNING_SECRET={secret}");
        }
        if let Some(key) = &self.api_key {
            cmd += &format!(" BATTLEMENT_API_KEY={key}");
        }
        cmd + " cargo run --example client"
    }
}

/// `s` as one POSIX shell word: as it is when it is plain, else single-quoted.
pub(crate) fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The address a client on this machine calls: loopback for a wildcard listener.
fn client_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(var) => format!("the environment variable {var}"),
        SecretSource::File(path) => format!("the file {}", path.display()),
        _ => "the value".to_owned(),
    }
}

/// 32 random bytes from the OS.
pub(crate) fn random_secret(field: &'static str) -> Result<[u8; 32], ConfigError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|_| ConfigError::new(ConfigErrorKind::Invalid, field, "no OS randomness"))?;
    Ok(secret)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The response headers the stack puts on `GET /noop` (one request from a documentation
/// address; `Date` and `Content-Length` are the server's, not the stack's).
async fn stack_headers(stack: &Stack) -> HeaderMap {
    use tower::ServiceExt;
    let app = stack.wrap(Router::new().route("/noop", get(|| async {})));
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static("/noop");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
    let res = match app.oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let mut headers = res.headers().clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::DATE);
    headers
}

/// Whether the stack's request span (`battlement::request`, with the method, path, client and
/// request id) is logged; set once the configuration is read, before the first request.
static REQUEST_SPAN_LOGGED: OnceLock<bool> = OnceLock::new();

/// The logs, on stderr: plain text unless stderr is a terminal, and the request id once per line.
///
/// The stack opens two nested spans per request: the request-id span (`request{request_id=…}`,
/// from `battlement::request_id`) and, with `[trace]`, the request span, which records the id
/// too. The formatter prints every span of the scope, so a line had the id twice: while the
/// request span is logged, this layer leaves the request-id span out (the id is in the other).
/// At the default level (`battlement::request=warn`) the request span is off and the request-id
/// span alone carries the id.
fn init_logs() {
    use tracing_subscriber::{
        Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,battlement::request=warn".into());
    let stderr = std::io::stderr();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(stderr.is_terminal())
        .with_filter(filter_fn(|meta| {
            !(meta.is_span()
                && meta.name() == "request"
                && meta.target().starts_with("battlement::request_id")
                && REQUEST_SPAN_LOGGED.get().copied().unwrap_or(false))
        }));
    tracing_subscriber::registry().with(filter).with(fmt).init();
}

/// Decides [`REQUEST_SPAN_LOGGED`]: the stack has the request span and the filter logs it.
fn note_request_span(config: &ServerConfig) {
    let logged = config.trace.enabled
        && tracing::enabled!(target: "battlement::request", tracing::Level::INFO);
    let _ = REQUEST_SPAN_LOGGED.set(logged);
}

#[tokio::main]
async fn main() -> ExitCode {
    // `battlement::request` logs each response at INFO: off by default, so that a load test
    // measures the stack and not the terminal. `RUST_LOG=info` shows them; rejections are
    // logged at WARN (`battlement::audit`) either way.
    init_logs();

    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The certificate first: a bad file stops the server before anything else is printed.
    let acceptor = if args.tls {
        let files = args.cert.as_deref().zip(args.key.as_deref());
        match tls::acceptor(files) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut hint = ClientHint::default();
    let built = load_config(&args, &mut hint).and_then(|config| {
        let stack = Stack::from_config(&config)?;
        let timeouts = serve::Timeouts::new(&config.server)?;
        Ok((config, stack, timeouts))
    });
    let (config, stack, timeouts) = match built {
        Ok(built) => built,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    note_request_span(&config);
    let noop_headers = match args.baseline {
        Some(Baseline::Headers) => Some(stack_headers(&stack).await),
        _ => None,
    };
    let router = match routes::router(&config, args.addr, noop_headers, &mut hint) {
        Ok(router) => router,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match args.baseline {
        None => {
            println!("stack: {}", stack.enabled().join(" → "));
            stack.wrap(router)
        }
        Some(baseline) => {
            println!("baseline {baseline:?}: no middleware (a load-test reference point only)");
            router
        }
    };

    #[cfg(feature = "metrics")]
    if let Err(e) = metrics::serve(args.metrics_addr).await {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    #[cfg(not(feature = "metrics"))]
    let _ = args.metrics_addr;

    let plain = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    if let Some(acceptor) = acceptor {
        let listener = match tokio::net::TcpListener::bind(args.tls_addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", args.tls_addr);
                return ExitCode::FAILURE;
            }
        };
        println!("listening on https://{}", args.tls_addr);
        tokio::spawn(tls::serve(listener, acceptor, app.clone(), timeouts));
    }
    let local = plain.local_addr().unwrap_or(args.addr);
    println!(
        "listening on http://{local} (header read timeout {:?}, idle timeout {:?})",
        timeouts.header_read, timeouts.idle
    );
    // One command that calls this server (issue 18): without `BATTLEMENT_SERVER` the client
    // calls a demo server of its own.
    println!(
        "try the client against this server:\n  {}",
        hint.command(&format!("http://{}", client_addr(local)))
    );
    for note in &hint.notes {
        println!("  note: {note}");
    }
    if config.https.redirect {
        println!(
            "  note: this port redirects to https, which the client example does not speak: \
             run the server without --tls (and https.redirect off) to try it"
        );
    }
    // `axum::serve` sets no header-read or idle timeout: a slow client could hold a
    // connection forever (see serve.rs).
    serve::serve(plain, app, timeouts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    ExitCode::SUCCESS
}
