//! A production-readiness report of a configured stack.

use std::fmt;

use base64::Engine as _;
use serde::Serialize;

use super::{
    config::{RedisConfig, RedisFailure, ServerConfig, TrustIncoming},
    server::ServerStack,
};
use crate::{config::SecretSource, net::TrustedProxies};

/// The verdict on one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatus {
    /// As it should be in production.
    Pass,
    /// Acceptable in some deployments; read the reason.
    Warn,
    /// Not fit for production.
    Fail,
}

impl AuditStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One checked item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditItem {
    /// A stable name for the check (`rate_limit`, `hsts`, `signing_secret`, ...).
    pub check: &'static str,
    /// The verdict.
    pub status: AuditStatus,
    /// The config path the item is about.
    pub field: String,
    /// Why, in one sentence (never a secret).
    pub reason: String,
}

/// The report of [`audit`]: `Display` prints it as text, `Serialize` as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Audit {
    /// The items, in stack order.
    pub items: Vec<AuditItem>,
}

impl Audit {
    /// Whether an item failed.
    pub fn has_failures(&self) -> bool {
        self.items.iter().any(|i| i.status == AuditStatus::Fail)
    }

    /// The items that are not a pass.
    pub fn findings(&self) -> impl Iterator<Item = &AuditItem> {
        self.items.iter().filter(|i| i.status != AuditStatus::Pass)
    }

    /// The items of one check.
    pub fn check(&self, check: &str) -> impl Iterator<Item = &AuditItem> {
        self.items.iter().filter(move |i| i.check == check)
    }

    /// The worst status of one check (`None` when it did not run).
    pub fn status_of(&self, check: &str) -> Option<AuditStatus> {
        self.check(check).map(|i| i.status).max()
    }

    /// The number of items with `status`.
    pub fn count(&self, status: AuditStatus) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn push(
        &mut self,
        check: &'static str,
        status: AuditStatus,
        field: &str,
        reason: impl Into<String>,
    ) {
        self.items.push(AuditItem {
            check,
            status,
            field: field.to_owned(),
            reason: reason.into(),
        });
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "battlement production-readiness audit: {} pass, {} warn, {} fail",
            self.count(AuditStatus::Pass),
            self.count(AuditStatus::Warn),
            self.count(AuditStatus::Fail)
        )?;
        let check = self.items.iter().map(|i| i.check.len()).max().unwrap_or(0);
        let field = self.items.iter().map(|i| i.field.len()).max().unwrap_or(0);
        for i in &self.items {
            writeln!(
                f,
                "  {}  {:<check$}  {:<field$}  {}",
                i.status.label(),
                i.check,
                i.field,
                i.reason
            )?;
        }
        Ok(())
    }
}

const YEAR_SECS: u64 = 365 * 86_400;
/// Trusted proxies covering this many public IPv4 addresses (a /8's worth) or more fail the
/// audit; a CDN's published list (Cloudflare's IPv4 ranges: about 1.5 million addresses) passes.
const PUBLIC_V4_MAX: u128 = 1 << 24;
/// The same for IPv6 global unicast: a /20's worth (Cloudflare's IPv6 list, /29 to /32
/// blocks, is about 2^100).
const PUBLIC_V6_MAX: u128 = 1 << 108;

/// `N public IPv4 addresses` and/or `2^k public IPv6 addresses`.
fn public_size(v4: u128, v6: u128) -> String {
    let mut parts = Vec::new();
    if v4 > 0 {
        parts.push(format!("{v4} public IPv4 addresses"));
    }
    if v6 > 0 {
        // log2, rounded down: the count itself is not readable.
        parts.push(format!(
            "2^{} public IPv6 addresses",
            127 - v6.leading_zeros()
        ));
    }
    parts.join(" and ")
}
const TEN_MIB: u64 = 10 * 1024 * 1024;

/// Audits a configuration for production: every item pass, warn or fail with its reason.
///
/// It builds the stack (so an invalid configuration or an unreadable secret fails the
/// `config` item) and checks what is off or weak: no rate limit, CORS open to any origin,
/// HSTS under a year, signing secrets under 32 bytes, a body limit over 10 MiB, request
/// bodies logged, client retries without a budget or timeout, Redis without TLS or password,
/// public address space at large trusted as a proxy (at least an IPv4 /8 or an IPv6 /20 of
/// public addresses, however the ranges are written), inline secrets, and more.
///
/// ```
/// use battlement::stack::{AuditStatus, ServerConfig, audit};
///
/// let weak = ServerConfig::from_toml_str(r#"
///     [rate_limit]
///     enabled = false
///     [security_headers]
///     hsts_max_age = "1d"
/// "#)?;
/// let report = audit(&weak);
/// assert!(report.has_failures());
/// assert_eq!(report.status_of("rate_limit"), Some(AuditStatus::Fail));
/// assert_eq!(report.status_of("hsts"), Some(AuditStatus::Warn));
/// println!("{report}");
/// # Ok::<(), battlement::ConfigError>(())
/// ```
pub fn audit(cfg: &ServerConfig) -> Audit {
    use AuditStatus::{Fail, Pass, Warn};
    let mut a = Audit::default();

    match ServerStack::from_config(cfg) {
        Ok(s) => a.push(
            "config",
            Pass,
            "",
            format!("valid; layers: {}", s.enabled().join(", ")),
        ),
        Err(e) => a.push(
            "config",
            Fail,
            e.field(),
            format!("invalid: {}", e.reason()),
        ),
    }

    // Trusted proxies: the ranges the stack will use (parsed as it parses them), judged by how
    // much public address space they cover, not by their spelling.
    match TrustedProxies::new(&cfg.trusted_proxies) {
        Err(e) => a.push(
            "trusted_proxies",
            Fail,
            e.field(),
            format!("invalid: {}", e.reason()),
        ),
        Ok(proxies) => {
            let (v4, v6) = proxies.public_coverage();
            let ranges = || proxies.ranges().collect::<Vec<_>>().join(", ");
            if v4 >= PUBLIC_V4_MAX || v6 >= PUBLIC_V6_MAX {
                a.push(
                    "trusted_proxies",
                    Fail,
                    "trusted_proxies",
                    format!(
                        "{} trust public address space at large ({}): any client there can \
                         forge its address, scheme and request id (at most the size of an IPv4 \
                         /8 and an IPv6 /20 of public space pass)",
                        ranges(),
                        public_size(v4, v6),
                    ),
                );
            } else {
                let public = if v4 == 0 && v6 == 0 {
                    "no public address".to_owned()
                } else {
                    public_size(v4, v6)
                };
                a.push(
                    "trusted_proxies",
                    Pass,
                    "trusted_proxies",
                    format!("{} range(s), {public} trusted", cfg.trusted_proxies.len()),
                );
            }
        }
    }

    // Request id.
    let rid = &cfg.request_id;
    if !rid.enabled {
        a.push(
            "request_id",
            Warn,
            "request_id.enabled",
            "no request id: logs and error reports cannot be correlated",
        );
    } else if rid.trust_incoming == TrustIncoming::Any {
        a.push(
            "request_id",
            Warn,
            "request_id.trust_incoming",
            "incoming ids are kept from anyone: clients choose the id in your logs",
        );
    } else {
        a.push(
            "request_id",
            Pass,
            "request_id",
            "every response carries an id",
        );
    }

    // Tracing.
    if cfg.trace.log_bodies {
        a.push(
            "trace_bodies",
            Fail,
            "trace.log_bodies",
            "request bodies are logged: they carry personal data and secrets",
        );
    } else {
        a.push(
            "trace_bodies",
            Pass,
            "trace.log_bodies",
            "request bodies are not logged",
        );
    }
    if cfg.trace.enabled {
        a.push(
            "trace",
            Pass,
            "trace",
            "a span per request, audit events for rejections, credentials redacted",
        );
    } else {
        a.push(
            "trace",
            Warn,
            "trace.enabled",
            "no request span and no audit event for rejections",
        );
    }
    if cfg.trace.enabled && cfg.trace.metrics && cfg!(feature = "metrics") {
        a.push(
            "metrics",
            Pass,
            "trace.metrics",
            "requests, latency and rejections are counted",
        );
    }

    // Panics.
    if cfg.catch_panic.enabled {
        a.push(
            "catch_panic",
            Pass,
            "catch_panic",
            "a panic is answered 500 without internals",
        );
    } else {
        a.push(
            "catch_panic",
            Warn,
            "catch_panic.enabled",
            "a panicking handler drops the connection",
        );
    }

    // Security headers and HSTS.
    let sh = &cfg.security_headers;
    if !sh.enabled {
        a.push(
            "security_headers",
            Fail,
            "security_headers.enabled",
            "no security headers (CSP, nosniff, frame options, HSTS)",
        );
    } else {
        a.push(
            "security_headers",
            Pass,
            "security_headers",
            format!("{:?} preset", sh.preset).to_lowercase(),
        );
        let age = sh.hsts_max_age.get().as_secs();
        if age < YEAR_SECS {
            a.push(
                "hsts",
                Warn,
                "security_headers.hsts_max_age",
                format!(
                    "HSTS max-age is {} (under a year): browsers forget to insist on HTTPS",
                    sh.hsts_max_age
                ),
            );
        } else {
            a.push(
                "hsts",
                Pass,
                "security_headers.hsts_max_age",
                format!("HSTS for {}", sh.hsts_max_age),
            );
        }
    }

    // HTTPS.
    if cfg.https.redirect {
        a.push(
            "https",
            Pass,
            "https.redirect",
            "plain HTTP is redirected to HTTPS",
        );
    } else {
        a.push(
            "https",
            Warn,
            "https.redirect",
            "plain HTTP is served: redirect here, or make sure the proxy does",
        );
    }

    // CORS.
    let cors = &cfg.cors;
    if !cors.enabled {
        a.push(
            "cors",
            Pass,
            "cors",
            "off: browsers refuse cross-origin calls",
        );
    } else if cors.allow_origins.iter().any(|o| o == "*") {
        a.push(
            "cors",
            Fail,
            "cors.allow_origins",
            "CORS wildcard: any web site can call this API from a browser",
        );
    } else if let Some(o) = cors
        .allow_origins
        .iter()
        .find(|o| o.starts_with("http://") && !is_local_origin(o))
    {
        a.push(
            "cors",
            Warn,
            "cors.allow_origins",
            format!("{o} is a plain-HTTP origin"),
        );
    } else {
        a.push(
            "cors",
            Pass,
            "cors.allow_origins",
            format!("{} allowed origin(s)", cors.allow_origins.len()),
        );
    }

    // Body limit.
    let bl = &cfg.body_limit;
    if !bl.enabled {
        a.push(
            "body_limit",
            Fail,
            "body_limit.enabled",
            "no body limit: one request can exhaust memory",
        );
    } else if bl.max.get() > TEN_MIB {
        a.push(
            "body_limit",
            Warn,
            "body_limit.max",
            format!(
                "body limit {} is over 10 MiB: set larger limits per route",
                bl.max
            ),
        );
    } else {
        a.push(
            "body_limit",
            Pass,
            "body_limit.max",
            format!("bodies up to {}", bl.max),
        );
    }

    // Rate limits.
    let rl = &cfg.rate_limit;
    if !rl.enabled || !rl.per_ip.enabled {
        a.push(
            "rate_limit",
            Fail,
            "rate_limit.enabled",
            "no rate limit: one client can exhaust the service",
        );
    } else {
        a.push(
            "rate_limit",
            Pass,
            "rate_limit.per_ip",
            format!(
                "{} per {} per client address",
                rl.per_ip.requests, rl.per_ip.per
            ),
        );
    }
    if cfg.api_key.is_some() && (!rl.enabled || !rl.per_principal.enabled) {
        a.push(
            "rate_limit_principal",
            Warn,
            "rate_limit.per_principal",
            "authenticated clients have no quota of their own",
        );
    }
    if let Some(redis) = &cfg.redis {
        let what = match (rl.redis.is_some(), cfg.signing.is_some()) {
            (true, _) => "signature nonces",
            (false, true) => "rate limits and signature nonces",
            (false, false) => "rate limits",
        };
        redis_items(&mut a, redis, "redis", what);
    }
    if let Some(redis) = &rl.redis {
        redis_items(&mut a, redis, "rate_limit.redis", "rate limits");
    }

    // Authentication and secrets.
    if cfg.api_key.is_none() && cfg.signing.is_none() {
        a.push(
            "authentication",
            Warn,
            "api_key",
            "no authentication in the stack (fine when the application authenticates)",
        );
    } else {
        a.push(
            "authentication",
            Pass,
            "api_key",
            "requests are authenticated",
        );
    }
    if let Some(s) = &cfg.signing {
        for (i, k) in s.keys.iter().enumerate() {
            secret_items(&mut a, &k.secret, &format!("signing.keys[{i}].secret"));
        }
        replay_items(&mut a, cfg);
    }
    if let Some(s) = &cfg.client.signing {
        secret_items(&mut a, &s.secret, "client.signing.secret");
    }

    // Timeout and breaker.
    if !cfg.timeout.enabled {
        a.push(
            "timeout",
            Warn,
            "timeout.enabled",
            "no request timeout: slow handlers pile up",
        );
    } else {
        a.push(
            "timeout",
            Pass,
            "timeout.request",
            format!("answers within {}", cfg.timeout.request),
        );
    }

    // Client.
    let c = &cfg.client;
    if c.retry.max_retries > 0 && !c.retry.budget.enabled {
        a.push(
            "client_retry_budget",
            Warn,
            "client.retry.budget.enabled",
            format!(
                "retries without a budget: a failing upstream gets up to {}x the load",
                c.retry.max_retries + 1
            ),
        );
    } else {
        a.push(
            "client_retry_budget",
            Pass,
            "client.retry",
            "retries draw on a budget",
        );
    }
    if c.timeout.get().is_zero() {
        a.push(
            "client_timeout",
            Fail,
            "client.timeout",
            "no timeout on outgoing calls: a hung upstream hangs this service",
        );
    } else {
        a.push(
            "client_timeout",
            Pass,
            "client.timeout",
            format!("each attempt within {}", c.timeout),
        );
    }
    if !c.circuit_breaker.enabled {
        a.push(
            "client_circuit_breaker",
            Warn,
            "client.circuit_breaker.enabled",
            "no circuit breaker on outgoing calls",
        );
    }
    a
}

fn is_local_origin(o: &str) -> bool {
    let host = o.trim_start_matches("http://");
    host.starts_with("localhost") || host.starts_with("127.0.0.1") || host.starts_with("[::1]")
}

fn inline_item(a: &mut Audit, source: &SecretSource, field: &str) {
    if source.is_inline() {
        a.push(
            "inline_secret",
            AuditStatus::Warn,
            field,
            "secret written in the config file: use { env = \"VAR\" } or { file = \"/path\" }",
        );
    }
}

fn secret_items(a: &mut Audit, source: &SecretSource, field: &str) {
    inline_item(a, source, field);
    let Ok(secret) = source.resolve() else {
        a.push(
            "signing_secret",
            AuditStatus::Fail,
            field,
            "the secret cannot be read",
        );
        return;
    };
    let v = secret.expose();
    let len = match v.strip_prefix("base64:") {
        Some(b64) => zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_default(),
        )
        .len(),
        None => v.len() / 2,
    };
    if len < 32 {
        a.push(
            "signing_secret",
            AuditStatus::Fail,
            field,
            format!("signing secret is {len} bytes, under 32: brute-forceable"),
        );
    } else {
        a.push(
            "signing_secret",
            AuditStatus::Pass,
            field,
            format!("{len}-byte secret"),
        );
    }
}

/// Where the nonces of `[signing]` live: shared through `[redis]`, or per instance while the
/// rate limits are shared (a replay to another instance passes).
fn replay_items(a: &mut Audit, cfg: &ServerConfig) {
    let check = "replay_store";
    match (&cfg.redis, &cfg.rate_limit.redis) {
        (Some(redis), _) => {
            if redis.on_failure == RedisFailure::Open {
                a.push(
                    check,
                    AuditStatus::Warn,
                    "redis.on_failure",
                    "on_failure = \"open\": while Redis is down nonces are not checked, and a \
                     captured signed request can be replayed; use \"closed\" or \"local\"",
                );
            } else {
                a.push(
                    check,
                    AuditStatus::Pass,
                    "redis",
                    "signature nonces shared through Redis: a replay to any instance is refused",
                );
            }
        }
        (None, Some(_)) => a.push(
            check,
            AuditStatus::Warn,
            "rate_limit.redis",
            "rate limits are shared through Redis but signature nonces are per instance: a \
             signed request accepted by one instance can be replayed to another; write the \
             section as [redis] to share both",
        ),
        (None, None) => a.push(
            check,
            AuditStatus::Pass,
            "signing",
            "signature nonces in this instance's memory (with several instances, write [redis] \
             to share them)",
        ),
    }
}

fn redis_items(a: &mut Audit, redis: &RedisConfig, section: &str, what: &str) {
    let field = format!("{section}.url");
    let field = field.as_str();
    let url = &redis.url;
    inline_item(a, url, field);
    // Without `redis` (or `redis-tls` for rediss://) the `config` item fails already:
    // `ServerStack::from_config` refuses the section.
    if cfg!(feature = "redis") {
        a.push(
            "redis",
            AuditStatus::Pass,
            section,
            format!(
                "{what} shared through Redis (prefix {:?}, on_failure = {})",
                redis.prefix,
                match redis.on_failure {
                    RedisFailure::Open => "open",
                    RedisFailure::Closed => "closed",
                    RedisFailure::Local => "local",
                }
            ),
        );
    }
    match &redis.hash_key {
        Some(key) => inline_item(a, key, &format!("{section}.hash_key")),
        None => a.push(
            "redis",
            AuditStatus::Warn,
            &format!("{section}.hash_key"),
            "no hash_key: bucket fingerprints use the crate's public default key, so a client \
             can search for keys that share another client's bucket; set 16 random bytes, the \
             same on every instance",
        ),
    }
    if redis.on_failure == RedisFailure::Open {
        a.push(
            "redis",
            AuditStatus::Warn,
            &format!("{section}.on_failure"),
            "on_failure = \"open\": while Redis is down nothing is rate-limited",
        );
    }
    let Ok(url) = url.resolve() else {
        a.push("redis", AuditStatus::Fail, field, "the URL cannot be read");
        return;
    };
    let u = url.expose();
    if !u.starts_with("rediss://") {
        a.push(
            "redis",
            AuditStatus::Warn,
            field,
            "Redis without TLS (redis://): use rediss:// unless on a private link",
        );
    }
    let authority = u
        .split_once("://")
        .map_or("", |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or("");
    let has_password = authority
        .rsplit_once('@')
        .is_some_and(|(cred, _)| cred.split_once(':').is_some_and(|(_, p)| !p.is_empty()));
    if !has_password {
        a.push(
            "redis",
            AuditStatus::Fail,
            field,
            "Redis without password: anyone on the network can reset the limits",
        );
    }
}

impl ServerConfig {
    /// The production-readiness report of this configuration: see [`audit`].
    pub fn audit(&self) -> Audit {
        audit(self)
    }

    /// Builds every layer once, reading the secrets, and reports the first error: call it at
    /// startup so a bad configuration stops the process before it serves.
    ///
    /// # Errors
    ///
    /// As [`ServerStack::from_config`] and [`ClientStack::from_config`](super::ClientStack)
    /// (or `signed_from_config` when `[client.signing]` is written).
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        ServerStack::from_config(self)?;
        if self.client.signing.is_some() {
            super::ClientStack::signed_from_config(&self.client)?;
        } else {
            super::ClientStack::from_config(&self.client)?;
        }
        Ok(())
    }
}
