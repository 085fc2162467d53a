//! The serde configuration of the whole stack (`battlement.toml`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "config")]
use crate::error::ConfigError;
use crate::{
    auth::api_key::ApiKeyConfig,
    config::{ByteSize, HumanDuration, SecretSource},
};

/// The configuration of the server stack (and of the client stack, under `[client]`).
///
/// Every field has a default, and the defaults are the secure production profile: request ids,
/// tracing with sensitive headers redacted, panics answered with a 500 problem, the `api`
/// security headers with a one-year HSTS, a 1 MiB body limit, 600 requests a minute per client
/// address, a 30 s request timeout. Unknown keys are errors. `battlement.toml` at the root of
/// the repository documents every key.
///
/// ```
/// use battlement::stack::ServerConfig;
///
/// let cfg = ServerConfig::from_toml_str(r#"
///     [body_limit]
///     max = "256KiB"
///     [rate_limit.per_ip]
///     requests = 100
///     per = "1m"
/// "#)?;
/// assert_eq!(cfg.body_limit.max.get(), 256 * 1024);
/// let err = ServerConfig::from_toml_str("[body_limit]\nmax = \"lots\"").unwrap_err();
/// assert_eq!(err.field(), "body_limit.max");
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Proxy ranges (CIDR) whose forwarded headers and request ids are believed.
    pub trusted_proxies: Vec<String>,
    /// `[request_id]`.
    pub request_id: RequestIdConfig,
    /// `[trace]`: the request span, logs and metrics.
    pub trace: TraceConfig,
    /// `[catch_panic]`.
    pub catch_panic: Toggle,
    /// `[security_headers]`.
    pub security_headers: SecurityHeadersConfig,
    /// `[https]`.
    pub https: HttpsConfig,
    /// `[cors]` (off unless the section is written).
    pub cors: CorsConfig,
    /// `[body_limit]`.
    pub body_limit: BodyLimitConfig,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitConfig,
    /// `[redis]`: one Redis shared by every instance for the rate limits and the signature
    /// nonces (see [`RedisConfig`]; off unless written).
    pub redis: Option<RedisConfig>,
    /// `[api_key]`: API-key authentication of every route (off unless the section is written).
    pub api_key: Option<ApiKeyConfig>,
    /// `[signing]`: RFC 9421 signature verification of every route (off unless written).
    pub signing: Option<SigningSection>,
    /// `[timeout]`.
    pub timeout: TimeoutConfig,
    /// `[circuit_breaker]`: a server-side breaker around the application (off unless written).
    pub circuit_breaker: BreakerSection,
    /// `[client]`: the client stack.
    pub client: ClientConfig,
    /// `[server]`: the connection timeouts of the HTTP server in front of the stack (the
    /// stack itself does not read them: the server does, see
    /// [Serving](crate::stack#serving)).
    pub server: ConnectionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            request_id: RequestIdConfig::default(),
            trace: TraceConfig::default(),
            catch_panic: Toggle { enabled: true },
            security_headers: SecurityHeadersConfig::default(),
            https: HttpsConfig::default(),
            cors: CorsConfig {
                enabled: false,
                ..CorsConfig::default()
            },
            body_limit: BodyLimitConfig::default(),
            rate_limit: RateLimitConfig::default(),
            redis: None,
            api_key: None,
            signing: None,
            timeout: TimeoutConfig::default(),
            circuit_breaker: BreakerSection {
                enabled: false,
                ..BreakerSection::default()
            },
            client: ClientConfig::default(),
            server: ConnectionConfig::default(),
        }
    }
}

/// A section that is only on or off.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    /// Whether the piece is in the stack (default `true`).
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Which incoming request ids are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrustIncoming {
    /// Only from peers in `trusted_proxies` (the default; with no proxies, never).
    #[default]
    Proxies,
    /// From anyone (a valid id is still required).
    Any,
    /// Never: every request gets a fresh id.
    None,
}

/// `[request_id]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConfig {
    /// Whether the layer is in the stack (default `true`).
    pub enabled: bool,
    /// The header (default `x-request-id`).
    pub header: String,
    /// Whose incoming ids are kept (default `proxies`).
    pub trust_incoming: TrustIncoming,
    /// Take the trace id of a W3C `traceparent` when no id came in (default `false`).
    pub traceparent: bool,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header: "x-request-id".to_owned(),
            trust_incoming: TrustIncoming::Proxies,
            traceparent: false,
        }
    }
}

/// `[trace]`: one span per request, audit events for rejections, metrics.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Whether the span layer is in the stack (default `true`).
    pub enabled: bool,
    /// Log the request headers at `debug`, sensitive ones redacted (default `false`).
    pub log_headers: bool,
    /// Declares that the application logs request bodies; battlement never does. The
    /// [audit](super::audit) fails on it: bodies carry personal data and secrets.
    pub log_bodies: bool,
    /// Headers redacted besides `Authorization`, `Proxy-Authorization`, `Cookie`,
    /// `Set-Cookie`, `Signature`, `Signature-Input`, `X-Api-Key` and the API-key header.
    pub redact_headers: Vec<String>,
    /// Record counters and histograms through the `metrics` crate (feature `metrics`; default
    /// `true`).
    pub metrics: bool,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            log_headers: false,
            log_bodies: false,
            redact_headers: Vec::new(),
            metrics: true,
        }
    }
}

/// A security-headers preset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Preset {
    /// For JSON APIs: `default-src 'none'`, no framing (the default).
    #[default]
    Api,
    /// helmet 8 parity for HTML pages.
    Web,
}

/// `[security_headers]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    /// Whether the layer is in the stack (default `true`).
    pub enabled: bool,
    /// `api` (default) or `web`.
    pub preset: Preset,
    /// HSTS `max-age` (default `365d`; `0s` tells browsers to forget it).
    pub hsts_max_age: HumanDuration,
    /// HSTS `includeSubDomains` (default `true`).
    pub hsts_include_subdomains: bool,
    /// HSTS `preload` (default `false`; needs `365d` and subdomains).
    pub hsts_preload: bool,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            preset: Preset::Api,
            hsts_max_age: HumanDuration::from_secs(365 * 86_400),
            hsts_include_subdomains: true,
            hsts_preload: false,
        }
    }
}

/// `[https]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsConfig {
    /// Redirect plain HTTP to HTTPS (default `false`: turn it on behind a TLS proxy listed in
    /// `trusted_proxies`).
    pub redirect: bool,
    /// Hosts the redirect may point to (`example.com`, `*.example.com`).
    pub allowed_hosts: Vec<String>,
    /// Paths served over plain HTTP (health checks).
    pub exempt_paths: Vec<String>,
    /// The HTTPS port when not 443.
    pub https_port: Option<u16>,
}

/// `[cors]`: tower-http's CORS layer, locked to an allow-list of origins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Whether the layer is in the stack (`true` once the section is written).
    pub enabled: bool,
    /// Allowed origins (`https://app.example.com`); `"*"` is refused with credentials.
    pub allow_origins: Vec<String>,
    /// Allowed methods (default `GET`, `HEAD`, `POST`).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (default `content-type`).
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials` (default `false`).
    pub allow_credentials: bool,
    /// How long a preflight may be cached (default `10m`).
    pub max_age: HumanDuration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_origins: Vec::new(),
            allow_methods: vec!["GET".into(), "HEAD".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: HumanDuration::from_secs(600),
        }
    }
}

/// `[body_limit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BodyLimitConfig {
    /// Whether the layer is in the stack (default `true`).
    pub enabled: bool,
    /// The largest request body (default `1MiB`).
    pub max: ByteSize,
}

impl Default for BodyLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max: ByteSize::mib(1),
        }
    }
}

/// `[rate_limit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether rate limiting is on at all (default `true`).
    pub enabled: bool,
    /// Per client address, before authentication (default 600 a minute, burst 60). A key
    /// left out of a written `[rate_limit.per_ip]` keeps this default.
    #[serde(deserialize_with = "QuotaConfig::per_ip")]
    pub per_ip: QuotaConfig,
    /// Per authenticated principal, after authentication (default 100 a minute, burst 10);
    /// only with `[api_key]`. A key left out keeps this default.
    #[serde(deserialize_with = "QuotaConfig::per_principal")]
    pub per_principal: QuotaConfig,
    /// Rate-limit headers on responses: `ietf` (default: `RateLimit-Policy`, `RateLimit`),
    /// `legacy` (`X-RateLimit-*`), `both` or `none` (a 429 still has `Retry-After`).
    pub headers: RateLimitHeaders,
    /// A Redis store for the rate limits only (see [`RedisConfig`]): prefer the top-level
    /// `[redis]`, which shares the signature nonces too. Written beside `[redis]`, it moves
    /// the rate limits to this Redis and leaves the nonces on `[redis]`.
    pub redis: Option<RedisConfig>,
}

/// `rate_limit.headers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// The IETF draft's `RateLimit-Policy` and `RateLimit` (the default).
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    Legacy,
    /// Both.
    Both,
    /// None.
    None,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip: QuotaConfig::new(600, 60),
            per_principal: QuotaConfig::new(100, 10),
            headers: RateLimitHeaders::Ietf,
            redis: None,
        }
    }
}

/// One quota: `requests` per `per`, with a `burst`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Whether this quota applies (default `true`).
    pub enabled: bool,
    /// Requests allowed per period.
    pub requests: u32,
    /// The period (default `1m`).
    pub per: HumanDuration,
    /// The burst (default: `requests`).
    pub burst: Option<u32>,
    /// IPv6 clients are grouped by this prefix length (per-IP quota only; default 56).
    pub ipv6_prefix: u8,
}

impl QuotaConfig {
    fn new(requests: u32, burst: u32) -> Self {
        Self {
            enabled: true,
            requests,
            per: HumanDuration::from_secs(60),
            burst: Some(burst),
            ipv6_prefix: 56,
        }
    }

    /// `[rate_limit.per_ip]`: the keys written over the per-IP defaults.
    fn per_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        QuotaPatch::deserialize(d).map(|p| p.over(RateLimitConfig::default().per_ip))
    }

    /// `[rate_limit.per_principal]`: the keys written over the per-principal defaults.
    fn per_principal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        QuotaPatch::deserialize(d).map(|p| p.over(RateLimitConfig::default().per_principal))
    }
}

/// The keys of a quota section as written: each one left out keeps the quota's own default
/// (a written `[rate_limit.per_principal]` without `requests` stays at 100 a minute, not the
/// generic 600).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaPatch {
    enabled: Option<bool>,
    requests: Option<u32>,
    per: Option<HumanDuration>,
    burst: Option<u32>,
    ipv6_prefix: Option<u8>,
}

impl QuotaPatch {
    fn over(self, base: QuotaConfig) -> QuotaConfig {
        QuotaConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            requests: self.requests.unwrap_or(base.requests),
            per: self.per.unwrap_or(base.per),
            burst: self.burst.or(base.burst),
            ipv6_prefix: self.ipv6_prefix.unwrap_or(base.ipv6_prefix),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests: 600,
            per: HumanDuration::from_secs(60),
            burst: None,
            ipv6_prefix: 56,
        }
    }
}

/// What the rate limiter and the nonce store do when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RedisFailure {
    /// Let the request through (its nonce unchecked).
    Open,
    /// Refuse it (503).
    Closed,
    /// Decide with the in-memory limiter and nonce store of this instance (the default).
    #[default]
    Local,
}

/// `[redis]` (rate limits and nonces) or `[rate_limit.redis]` (rate limits only): a Redis
/// shared by every instance.
///
/// With the `redis` feature, [`ServerStack::from_config`](super::ServerStack::from_config)
/// connects lazily (the stack starts while Redis is down) and, for `[redis]`, puts the per-IP
/// and per-principal limits and the nonces of `[signing]` on that one connection: every
/// instance built from the same configuration shares the quotas, and a signed request
/// accepted by one instance is refused as a replay by all the others. `[rate_limit.redis]`
/// (kept for compatibility) shares the rate limits only: the nonces stay per instance and
/// the [audit](super::audit) warns when `[signing]` is on. Written together, the rate limits
/// go to `[rate_limit.redis]` and the nonces to `[redis]`.
///
/// `on_failure` applies to both stores while Redis cannot answer: `closed` refuses (rate
/// limits: 503; nonces: 503, never an unchecked nonce), `local` decides in this instance's
/// memory (a replay to another instance passes during the outage), `open` lets requests
/// through (nonces unchecked: replays pass; the audit warns). For nonces stricter than the
/// rate limits, write both sections: `[rate_limit.redis]` with the limits' policy (`local`)
/// and `[redis]` with the nonces' (`closed`), two connections to the same Redis.
///
/// Without the feature the section is refused at startup (a [`ConfigError`](crate::ConfigError)
/// naming `redis` or `rate_limit.redis`): instances must never limit or check nonces on their
/// own unnoticed.
///
/// ```
/// use battlement::stack::ServerConfig;
///
/// let cfg = ServerConfig::from_toml_str(r#"
///     [redis]
///     url = { env = "REDIS_URL" }
///     prefix = "shop-api"
///     on_failure = "closed"
/// "#)?;
/// assert_eq!(cfg.redis.unwrap().prefix, "shop-api");
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS, feature `redis-tls`) URL, with the password: a secret
    /// reference.
    pub url: SecretSource,
    /// The namespace of the keys (default `battlement`): 1 to 64 characters of
    /// `A-Z a-z 0-9 - _ . :`. Instances share quotas and nonces only with the same prefix.
    #[serde(default = "RedisConfig::default_prefix")]
    pub prefix: String,
    /// The longest a decision waits for Redis (default `50ms`, at most `5s`).
    #[serde(default = "RedisConfig::default_timeout")]
    pub timeout: HumanDuration,
    /// What to do when Redis does not answer (default `local`), for rate limits and nonces.
    #[serde(default)]
    pub on_failure: RedisFailure,
    /// The key of the fingerprint hasher (16 bytes: 32 hex digits, or `base64:…`), a secret
    /// reference, the same on every instance. Without it the fingerprints use the crate's
    /// public default key, with which a client can search for keys that fall into another
    /// client's bucket (the audit warns).
    #[serde(default)]
    pub hash_key: Option<SecretSource>,
    /// `standalone` (the default: one Redis, or a primary behind a proxy) or `cluster`: a
    /// Redis Cluster (or Valkey cluster) through the native cluster client (feature
    /// `redis-cluster`), `url` then holding the seed nodes' URLs separated by commas (the
    /// credentials and TLS of the first apply to every node).
    #[serde(default)]
    pub mode: RedisMode,
    /// The slots of the local over-limit cache (default 16384, about 1.7 MiB; 0 turns it off):
    /// a client refused with a known wait is refused again by this instance, with the same
    /// headers, without a round trip until the wait is over.
    #[serde(default = "RedisConfig::default_local_cache")]
    pub local_cache: usize,
}

/// `[redis] mode`: one Redis or a Redis Cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RedisMode {
    /// One Redis (or a primary behind a proxy): the default.
    #[default]
    Standalone,
    /// A Redis Cluster through the native cluster client (feature `redis-cluster`).
    Cluster,
}

impl RedisConfig {
    fn default_local_cache() -> usize {
        16_384
    }

    fn default_prefix() -> String {
        "battlement".to_owned()
    }

    fn default_timeout() -> HumanDuration {
        HumanDuration::from_millis(50)
    }
}

/// `[signing]`: RFC 9421 verification, keys referenced as secrets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// The keys; the first one is current, the others are accepted during a rotation.
    pub keys: Vec<SigningKeySection>,
    /// How long a rotated-out key stays valid (default `7d`).
    #[serde(default)]
    pub grace_period: Option<HumanDuration>,
    /// Components every signature must cover.
    #[serde(default)]
    pub required_components: Option<Vec<String>>,
    /// Maximum age of `created` (default `5m`).
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// Allowed clock skew (default `1m`).
    #[serde(default)]
    pub clock_skew: Option<HumanDuration>,
    /// Whether a nonce is required (default `true`).
    #[serde(default)]
    pub require_nonce: Option<bool>,
    /// Most body bytes buffered to check `Content-Digest` (default `1MiB`).
    #[serde(default)]
    pub body_limit: Option<ByteSize>,
    /// Assume `https` for requests whose URI has no scheme (behind a TLS proxy).
    #[serde(default)]
    pub assume_https: bool,
}

/// One `[[signing.keys]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySection {
    /// The key id.
    pub id: String,
    /// The secret (hex, or `base64:…`): `{ env = "VAR" }` or `{ file = "/path" }`.
    pub secret: SecretSource,
    /// Unix time from which the key is valid.
    #[serde(default)]
    pub not_before: Option<u64>,
    /// Unix time until which the key is valid.
    #[serde(default)]
    pub not_after: Option<u64>,
}

/// `[timeout]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Whether the layer is in the stack (default `true`).
    pub enabled: bool,
    /// The longest the application may take to answer (default `30s`); past it, a 503
    /// problem.
    pub request: HumanDuration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            request: HumanDuration::from_secs(30),
        }
    }
}

/// A circuit breaker: `[circuit_breaker]` (server) or `[client.circuit_breaker]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Whether the breaker is in the stack (`true` once the section is written).
    pub enabled: bool,
    /// Trip after this many failures in a row (default 5).
    pub consecutive_failures: u32,
    /// How long the circuit stays open (default `30s`).
    pub cooldown: HumanDuration,
    /// Probes let through when half-open (default 1).
    pub half_open_permits: u32,
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            cooldown: HumanDuration::from_secs(30),
            half_open_permits: 1,
        }
    }
}

/// `[client]`: the client stack (request-id forwarding, retry, breaker, signing, timeout).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Forward the current request id (default `true`), in `request_id.header`.
    pub forward_request_id: bool,
    /// `[client.retry]`.
    pub retry: RetrySection,
    /// `[client.circuit_breaker]` (on by default).
    pub circuit_breaker: BreakerSection,
    /// `[client.signing]`: sign outgoing requests (off unless written).
    pub signing: Option<ClientSigningSection>,
    /// The timeout of each attempt (default `5s`; `0s` turns it off, which the audit fails).
    pub timeout: HumanDuration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            forward_request_id: true,
            retry: RetrySection::default(),
            circuit_breaker: BreakerSection::default(),
            signing: None,
            timeout: HumanDuration::from_secs(5),
        }
    }
}

/// `[client.retry]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Retries after the first attempt (default 3; 0 turns retries off).
    pub max_retries: u32,
    /// First backoff (default `100ms`).
    pub initial_backoff: HumanDuration,
    /// Largest backoff (default `10s`).
    pub max_backoff: HumanDuration,
    /// `[client.retry.budget]`.
    pub budget: BudgetSection,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: HumanDuration::from_millis(100),
            max_backoff: HumanDuration::from_secs(10),
            budget: BudgetSection::default(),
        }
    }
}

/// `[client.retry.budget]`: retries as a share of requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSection {
    /// Whether retries draw on a budget (default `true`; off, a failing upstream gets up to
    /// `max_retries + 1` times the load, which the audit flags).
    pub enabled: bool,
    /// Retries allowed per request (default 0.2).
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic (default 1).
    pub min_per_sec: u32,
    /// The window (default `10s`).
    pub window: HumanDuration,
}

impl Default for BudgetSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ratio: 0.2,
            min_per_sec: 1,
            window: HumanDuration::from_secs(10),
        }
    }
}

/// `[client.signing]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSigningSection {
    /// The key id.
    pub key_id: String,
    /// The secret (hex, or `base64:…`).
    pub secret: SecretSource,
    /// `expires` = `created` + this (default: no `expires`).
    #[serde(default)]
    pub expires_in: Option<HumanDuration>,
}

/// `[server]`: the timeouts of the HTTP connections that carry the stack's requests.
///
/// The stack's own timeout (`[timeout]`) starts once a request's head has been read; these
/// bound what comes before and between requests, where a slow client would otherwise hold a
/// connection (and a file descriptor) forever: an idle keep-alive connection, a request head
/// sent halfway, or one byte every few seconds. The stack does not read this section (it
/// sees requests, not connections); the server that serves it does (the example server does;
/// [Serving](crate::stack#serving) shows how with hyper-util).
///
/// Both are on by default and cannot be turned off: `0s` is refused.
///
/// ```
/// use std::time::Duration;
///
/// use battlement::stack::ServerConfig;
///
/// let cfg = ServerConfig::from_toml_str("[server]\nheader_read_timeout = \"5s\"")?;
/// assert_eq!(cfg.server.header_read_timeout.get(), Duration::from_secs(5));
/// assert_eq!(cfg.server.idle_timeout.get(), Duration::from_secs(60));
/// let err = ServerConfig::from_toml_str("[server]\nidle_timeout = \"0s\"").unwrap_err();
/// assert_eq!(err.field(), "server.idle_timeout");
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The longest a client may take to send a request head (default `10s`); past it the
    /// connection is closed. With hyper (1.x), the time counts from when the server starts
    /// waiting for a head: on HTTP/1.1, from the connection's start and again from the end of
    /// each response, so it also bounds the wait between keep-alive requests.
    #[serde(deserialize_with = "positive_duration")]
    pub header_read_timeout: HumanDuration,
    /// How long a connection may stay open with no request in flight (default `60s`); past
    /// it the connection is shut down gracefully (HTTP/2: `GOAWAY`). Client pings and
    /// half-sent heads do not make a connection busy.
    #[serde(deserialize_with = "positive_duration")]
    pub idle_timeout: HumanDuration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: HumanDuration::from_secs(10),
            idle_timeout: HumanDuration::from_secs(60),
        }
    }
}

impl ConnectionConfig {
    /// Checks a configuration made in code (a parsed one is checked already).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the field (`server.idle_timeout`) when a
    /// timeout is zero.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        for (field, value) in [
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
        ] {
            if value.get().is_zero() {
                return Err(crate::ConfigError::out_of_range(field, ZERO_TIMEOUT));
            }
        }
        Ok(())
    }
}

const ZERO_TIMEOUT: &str = "must be more than 0: a connection timeout cannot be turned off";

/// A duration that is not zero.
fn positive_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let value = HumanDuration::deserialize(d)?;
    if value.get().is_zero() {
        return Err(serde::de::Error::custom(ZERO_TIMEOUT));
    }
    Ok(value)
}

#[cfg(feature = "config")]
impl ServerConfig {
    /// Parses a TOML text (no environment overrides).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field is the dotted path of the offending key
    /// (`rate_limit.per_ip.requests`) for a syntax error, an unknown key or a value of the
    /// wrong type or format.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses a TOML text, then applies the `BATTLEMENT__…` overrides found in `vars` (see
    /// [`apply_env_overrides`](crate::config::apply_env_overrides)).
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str), and for a malformed override.
    pub fn from_toml_with_env<I>(text: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::invalid("", e.message().to_owned()))?;
        crate::config::apply_env_overrides(&mut table, crate::config::ENV_PREFIX, vars)?;
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            ConfigError::invalid(field, e.into_inner().message().to_owned())
        })
    }

    /// Reads a TOML file and applies the process's `BATTLEMENT__SECTION__KEY` environment
    /// variables over it (`BATTLEMENT__BODY_LIMIT__MAX=2MiB`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `file`) when the file cannot be read, or as
    /// [`from_toml_with_env`](Self::from_toml_with_env).
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| {
            ConfigError::new(
                crate::ConfigErrorKind::Missing,
                "file",
                format!("cannot read {}: {e}", path.as_ref().display()),
            )
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }
}
