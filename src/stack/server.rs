//! The server stack: every server layer in the order of the [stack's ordering](crate::stack#ordering).

use std::{
    fmt,
    str::FromStr,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use super::{
    body::StackBody,
    config::{
        BreakerSection, Preset, QuotaConfig, RateLimitHeaders, ServerConfig, SigningSection,
        TrustIncoming,
    },
    engine::{Engine, EngineLayer, EngineParts, ServerFuture},
    observe::ObserveLayer,
    panic::CatchPanicLayer,
    replay::StackReplayStore,
    store::{self, StackStore},
    timeout::RequestTimeoutLayer,
};
use crate::{
    auth::api_key::{ApiKeyLayer, Principal},
    body_limit::BodyLimitLayer,
    circuit_breaker::{BreakerConfig, CircuitBreakerLayer, DefaultClassifier, Server},
    cors::Cors,
    error::ConfigError,
    https::HttpsRedirectLayer,
    net::TrustedProxies,
    problem::DefaultRejection,
    rate_limit::{ClientIp, ExtensionKey, HeaderStyle, Limit, Quota, RateLimitLayer},
    request_id::SetRequestIdLayer,
    security_headers::{Hsts, SecurityHeaders, SecurityHeadersLayer},
    signing::{KeyConfig, SigningConfig, VerifySignatureLayer},
};

/// The server breaker layer as the stack builds it.
pub type ServerBreakerLayer =
    CircuitBreakerLayer<crate::circuit_breaker::Breaker, DefaultClassifier, Server>;

/// Every server layer of the crate, each optional, composed in the order of the [stack's ordering](crate::stack#ordering)
/// (outermost first):
///
/// 1. request id ([`SetRequestIdLayer`]);
/// 2. the request span, audit events and metrics ([`ObserveLayer`]);
/// 3. panics → 500 problem ([`CatchPanicLayer`]), for a panic in a layer;
/// 4. security headers;
/// 5. HTTPS redirect, then CORS (tower-http);
/// 6. body limit;
/// 7. rate limit per client address;
/// 8. the server-side circuit breaker, then the request timeout;
/// 9. authentication: API key, then signature verification (the principal is recorded on
///    the span);
/// 10. rate limit per principal;
/// 11. panics again → 500 problem, for a panic of the application;
/// 12. the application.
///
/// Why this order where it differs from the order of the design notes (authentication before the deadline):
///
/// * The timeout is outside authentication, so that signature verification, which buffers
///   the body, reads it under the request deadline: a request whose body stops coming gets
///   its 408 in time, signed or not. Inside the body limit it sees whether the body keeps it
///   waiting: 408 (`Connection: close`) for a client that stopped sending its body, 503 for
///   a slow handler (see [`RequestTimeoutLayer`]).
/// * The breaker is outside the timeout, so that a handler slower than the timeout counts as
///   a failure. The rejections of the layers inside it (401, 403, 413, 429, the 408 of a
///   stalled body, a replay store's 503) carry the [`Refused`](crate::problem::Refused)
///   marker, which its classifier does not count: no client can open it for everyone.
/// * The application's panics are caught next to it, so their 500 goes out through every
///   layer and carries the security and rate-limit headers like every other answer; the outer
///   catcher stays for a panic in a layer (a user's key extractor or rejection renderer).
///
/// Whichever parts are on, the stack is one service, [`ServerService`], with one response
/// future, [`ServerFuture`]: the stack's engine runs each part that is on, in that order,
/// through the same crate-private core its standalone layer calls (a part that is off is a
/// `None` it skips), so every configuration costs one service and one future, and the
/// stack's type does not depend on which parts are on. Compared with the layers composed
/// one by one, the request is moved once, the clock is read once, and the response gets its
/// headers in one pass. The application sees one request body type, [`StackBody`]: the
/// incoming body through the body limit, or the body signature verification read whole.
/// Cloning the stack or its service is a few `Arc` bumps.
///
/// Build it from a [`ServerConfig`] ([`from_config`](Self::from_config)), or in code from
/// [`new`](Self::new) (the same secure defaults) and the setters, which take the layer or
/// `None`.
#[derive(Clone)]
pub struct ServerStack {
    request_id: Option<SetRequestIdLayer>,
    observe: Option<ObserveLayer>,
    catch_panic: Option<CatchPanicLayer>,
    security_headers: Option<SecurityHeadersLayer>,
    https: Option<HttpsRedirectLayer>,
    cors: Option<Cors>,
    body_limit: Option<BodyLimitLayer>,
    rate_limit_ip: Option<RateLimitLayer<StackStore>>,
    api_key: Option<ApiKeyLayer>,
    signing: Option<VerifySignatureLayer<DefaultRejection, StackReplayStore>>,
    rate_limit_principal: Option<RateLimitLayer<StackStore>>,
    timeout: Option<RequestTimeoutLayer>,
    circuit_breaker: Option<ServerBreakerLayer>,
}

impl Default for ServerStack {
    fn default() -> Self {
        Self::new()
    }
}

const DEFAULT_PER_IP: Quota = match (
    std::num::NonZeroU32::new(600),
    std::num::NonZeroU32::new(60),
) {
    (Some(rate), Some(burst)) => Quota::per_minute(rate).with_burst(burst),
    _ => panic!("non-zero constants"),
};

impl ServerStack {
    /// The secure defaults, as [`ServerConfig::default`] gives them: request ids (incoming ids
    /// ignored: no proxy is trusted), the span, panic catching, the `api` security headers, a
    /// 1 MiB body limit, 600 requests a minute (burst 60) per peer address, a 30 s timeout.
    pub fn new() -> Self {
        Self {
            request_id: Some(SetRequestIdLayer::new().ignore_incoming()),
            observe: Some(ObserveLayer::new([], TrustedProxies::none(), false, true)),
            catch_panic: Some(CatchPanicLayer::new()),
            security_headers: Some(SecurityHeaders::api().layer()),
            https: None,
            cors: None,
            body_limit: Some(BodyLimitLayer::new(1024 * 1024)),
            rate_limit_ip: RateLimitLayer::new(Limit::new(
                ClientIp::new(TrustedProxies::none()),
                DEFAULT_PER_IP,
            ))
            .into(),
            api_key: None,
            signing: None,
            rate_limit_principal: None,
            timeout: Some(RequestTimeoutLayer::new(Duration::from_secs(30))),
            circuit_breaker: None,
        }
    }

    /// Builds the stack from its configuration, reading the secrets it references.
    ///
    /// With `[redis]` (feature `redis`) the rate limits and the nonces of `[signing]` share
    /// one lazily made Redis connection, so instances built from the same file share quotas
    /// and refuse each other's replays; `[rate_limit.redis]` shares the rate limits only.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field is the dotted path of the offending setting
    /// (`cors.allow_origins[0]`, `rate_limit.per_ip.requests`, `signing.keys[1].secret`, ...):
    /// an invalid value, a wildcard CORS origin with credentials, a secret that cannot be
    /// read, an empty list where one is needed.
    pub fn from_config(cfg: &ServerConfig) -> Result<Self, ConfigError> {
        let trusted = TrustedProxies::new(cfg.trusted_proxies.iter().map(String::as_str))
            .map_err(under("trusted_proxies"))?;

        let request_id = if cfg.request_id.enabled {
            let layer = SetRequestIdLayer::new()
                .try_header(&cfg.request_id.header)
                .map_err(at("request_id.header"))?
                .use_traceparent(cfg.request_id.traceparent);
            Some(match cfg.request_id.trust_incoming {
                TrustIncoming::Proxies => layer.trust_incoming_from(trusted.clone()),
                TrustIncoming::Any => layer,
                TrustIncoming::None => layer.ignore_incoming(),
            })
        } else {
            None
        };

        let mut redact = Vec::new();
        for (i, h) in cfg.trace.redact_headers.iter().enumerate() {
            redact.push(HeaderName::from_str(h).map_err(|_| {
                ConfigError::invalid(format!("trace.redact_headers[{i}]"), "not a header name")
            })?);
        }
        if let Some(h) = cfg.api_key.as_ref().and_then(|a| a.header.as_deref())
            && let Ok(h) = HeaderName::from_str(h)
        {
            redact.push(h);
        }
        let observe = cfg.trace.enabled.then(|| {
            ObserveLayer::new(
                redact,
                trusted.clone(),
                cfg.trace.log_headers,
                cfg.trace.metrics,
            )
        });

        let sh = &cfg.security_headers;
        let security_headers = if sh.enabled {
            let mut hsts = Hsts::new()
                .max_age(sh.hsts_max_age.get().as_secs())
                .include_subdomains(sh.hsts_include_subdomains);
            if sh.hsts_preload {
                hsts = hsts.preload();
            }
            let headers = match sh.preset {
                Preset::Api => SecurityHeaders::api(),
                Preset::Web => SecurityHeaders::web(),
            };
            Some(
                headers
                    .hsts(hsts)
                    .map_err(at("security_headers.hsts_max_age"))?
                    .trusted_proxies(trusted.clone())
                    .layer(),
            )
        } else {
            None
        };

        let https = if cfg.https.redirect {
            let mut layer = HttpsRedirectLayer::new(&cfg.https.allowed_hosts)
                .map_err(|e| rename(e, |f| f.replacen("https.hosts", "https.allowed_hosts", 1)))?
                .trusted_proxies(trusted.clone());
            for (i, p) in cfg.https.exempt_paths.iter().enumerate() {
                layer = layer
                    .exempt_path(p)
                    .map_err(at(&format!("https.exempt_paths[{i}]")))?;
            }
            if let Some(port) = cfg.https.https_port {
                layer = layer.https_port(port)?;
            }
            Some(layer)
        } else {
            None
        };

        let cors = if cfg.cors.enabled {
            Some(Cors::from_config(&cfg.cors)?)
        } else {
            None
        };

        let body_limit = if cfg.body_limit.enabled {
            if cfg.body_limit.max.get() == 0 {
                return Err(ConfigError::out_of_range(
                    "body_limit.max",
                    "must be more than 0 (set `enabled = false` to turn the limit off)",
                ));
            }
            Some(BodyLimitLayer::new(cfg.body_limit.max.get()))
        } else {
            None
        };

        let rl = &cfg.rate_limit;
        // `[redis]`: one connection for the rate limits and the nonces; `[rate_limit.redis]`:
        // the rate limits only, on a connection of their own. Both refused without `redis`.
        let redis = match &cfg.redis {
            Some(r) => Some(store::configured(r, "redis")?),
            None => None,
        };
        let shared = match &rl.redis {
            Some(r) => Some(store::configured(r, "rate_limit.redis")?.rate_limit_store()),
            None => redis.as_ref().map(store::RedisSection::rate_limit_store),
        };
        let rate_limit_ip = if rl.enabled && rl.per_ip.enabled {
            let quota = quota(&rl.per_ip, "rate_limit.per_ip")?;
            let key = ClientIp::new(trusted.clone())
                .with_ipv6_prefix(rl.per_ip.ipv6_prefix)
                .map_err(at("rate_limit.per_ip.ipv6_prefix"))?;
            let limit = Limit::new(key, quota).with_id(store::PER_IP_LIMIT_ID);
            Some(store::layer(limit, shared.as_ref()).with_headers(header_style(rl.headers)))
        } else {
            None
        };

        let api_key = match &cfg.api_key {
            Some(c) => Some(
                ApiKeyLayer::from_config(c)
                    .map_err(under("api_key"))?
                    .trusted_proxies(trusted.clone()),
            ),
            None => None,
        };
        let signing = match &cfg.signing {
            Some(s) => {
                let nonces = match &redis {
                    Some(r) => r.replay_store(),
                    None => StackReplayStore::default(),
                };
                Some(
                    verify_layer(s)
                        .map_err(under("signing"))?
                        .with_replay_store(nonces),
                )
            }
            None => None,
        };
        let rate_limit_principal = if rl.enabled && rl.per_principal.enabled && api_key.is_some() {
            let quota = quota(&rl.per_principal, "rate_limit.per_principal")?;
            let limit = Limit::new(ExtensionKey::<Principal>::new(), quota)
                .with_id(store::PER_PRINCIPAL_LIMIT_ID);
            Some(store::layer(limit, shared.as_ref()).with_headers(header_style(rl.headers)))
        } else {
            None
        };

        let timeout = if cfg.timeout.enabled {
            if cfg.timeout.request.get().is_zero() {
                return Err(ConfigError::out_of_range(
                    "timeout.request",
                    "must be more than 0 (set `enabled = false` to turn the timeout off)",
                ));
            }
            Some(RequestTimeoutLayer::new(cfg.timeout.request.get()))
        } else {
            None
        };
        let circuit_breaker = if cfg.circuit_breaker.enabled {
            Some(breaker_layer(&cfg.circuit_breaker, "circuit_breaker")?.server())
        } else {
            None
        };

        Ok(Self {
            request_id,
            observe,
            catch_panic: cfg.catch_panic.enabled.then(CatchPanicLayer::new),
            security_headers,
            https,
            cors,
            body_limit,
            rate_limit_ip,
            api_key,
            signing,
            rate_limit_principal,
            timeout,
            circuit_breaker,
        })
    }

    /// Wraps an axum router in the stack (`Router::layer`).
    ///
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so that the rate
    /// limit sees client addresses, and with a header-read and an idle timeout (`axum::serve`
    /// sets neither, and the stack's timeout starts once a request head has been read): the
    /// [module docs](crate::stack#serving) show how, with hyper-util's builder.
    #[cfg(feature = "axum")]
    pub fn wrap<St: Clone + Send + Sync + 'static>(
        &self,
        router: axum::Router<St>,
    ) -> axum::Router<St> {
        router.layer(self.clone())
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl ServerStack {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, layer: impl Into<Option<$ty>>) -> Self {
                    self.$name = layer.into();
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets (or with `None` removes) the request-id layer.
    request_id: SetRequestIdLayer;
    /// Sets (or removes) the span, audit and metrics layer.
    observe: ObserveLayer;
    /// Sets (or removes) panic catching.
    catch_panic: CatchPanicLayer;
    /// Sets (or removes) the security headers.
    security_headers: SecurityHeadersLayer;
    /// Sets (or removes) the HTTPS redirect.
    https: HttpsRedirectLayer;
    /// Sets (or removes) CORS (battlement's [`Cors`], with tower-http's behaviour).
    cors: Cors;
    /// Sets (or removes) the body limit.
    body_limit: BodyLimitLayer;
    /// Sets (or removes) the rate limit before authentication (per client address): a
    /// [`RateLimitLayer`] on a [`MemoryStore`](crate::rate_limit::MemoryStore) or (feature
    /// `redis`) a [`RedisRateLimitStore`](crate::redis::RedisRateLimitStore).
    rate_limit_ip: RateLimitLayer<StackStore>;
    /// Sets (or removes) API-key authentication.
    api_key: ApiKeyLayer;
    /// Sets (or removes) signature verification: a [`VerifySignatureLayer`] on a
    /// [`MemoryReplayStore`](crate::signing::MemoryReplayStore) or (feature `redis`) a
    /// [`RedisReplayStore`](crate::redis::RedisReplayStore).
    signing: VerifySignatureLayer<DefaultRejection, StackReplayStore>;
    /// Sets (or removes) the rate limit after authentication (per principal), on either
    /// store.
    rate_limit_principal: RateLimitLayer<StackStore>;
    /// Sets (or removes) the request timeout.
    timeout: RequestTimeoutLayer;
    /// Sets (or removes) the server-side circuit breaker.
    circuit_breaker: ServerBreakerLayer;
}

impl ServerStack {
    /// The parts that are on, as the engine's one service ([`EngineLayer`]): one call, one
    /// response future around the application's, one clock read and one pass over the
    /// response headers, instead of up to fourteen nested layers.
    fn engine(&self) -> EngineLayer {
        EngineLayer::new(EngineParts {
            request_id: self.request_id.as_ref(),
            observe: self.observe.as_ref(),
            catch_panic: self.catch_panic,
            security_headers: self.security_headers.as_ref(),
            https: self.https.as_ref(),
            cors: self.cors.as_ref(),
            body_limit: self.body_limit.as_ref(),
            rate_limit: self.rate_limit_ip.as_ref(),
            timeout: self.timeout,
            breaker: self.circuit_breaker.as_ref(),
            api_key: self.api_key.as_ref(),
            signing: self.signing.as_ref(),
            rate_limit_principal: self.rate_limit_principal.as_ref(),
        })
    }

    /// The store of the rate limits (of the per-IP one, else of the per-principal one; from a
    /// configuration both share it): is it shared, its Redis connection and breaker.
    pub fn rate_limit_store(&self) -> Option<&StackStore> {
        self.rate_limit_ip
            .as_ref()
            .or(self.rate_limit_principal.as_ref())
            .map(RateLimitLayer::store)
    }

    /// The replay store of signature verification: is it shared (Redis, from `[redis]`), its
    /// Redis connection and breaker.
    pub fn replay_store(&self) -> Option<&StackReplayStore> {
        self.signing
            .as_ref()
            .map(VerifySignatureLayer::replay_store)
    }

    /// Which pieces are on, outermost first, by name (`"request_id"`, `"rate_limit_ip"`, ...).
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            ("request_id", self.request_id.is_some()),
            ("observe", self.observe.is_some()),
            ("catch_panic", self.catch_panic.is_some()),
            ("security_headers", self.security_headers.is_some()),
            ("https", self.https.is_some()),
            ("cors", self.cors.is_some()),
            ("body_limit", self.body_limit.is_some()),
            ("rate_limit_ip", self.rate_limit_ip.is_some()),
            ("circuit_breaker", self.circuit_breaker.is_some()),
            ("timeout", self.timeout.is_some()),
            ("api_key", self.api_key.is_some()),
            ("signing", self.signing.is_some()),
            ("rate_limit_principal", self.rate_limit_principal.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect()
    }
}

impl fmt::Debug for ServerStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStack")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl<S> Layer<S> for ServerStack {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> ServerService<S> {
        ServerService {
            engine: self.engine().layer(inner),
        }
    }
}

/// The service of a [`ServerStack`] around the application `S`: one type whatever parts are
/// on (see [`ServerStack`]).
///
/// It is a `Service<Request<B>>` for any request body `B` (`B::Error: Into<BoxError>`),
/// when `S` is a `Service<Request<StackBody<B>>>` that answers `Response<ResBody>` with
/// `ResBody: From<Bytes> + Default` (the stack's own answers: problem+json, the preflight,
/// the redirect); axum's `Router`, a `tower::service_fn` handler and tonic's server are.
/// Its future is [`ServerFuture`]. `Clone`, `Send` and `Sync` when `S` is; cloning it
/// clones `S` and bumps one `Arc`.
///
/// ```
/// use std::convert::Infallible;
///
/// use battlement::{
///     net::PeerAddr,
///     stack::{ServerStack, StackBody},
/// };
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = service_fn(|_req: Request<StackBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi"))))
/// });
/// let svc = ServerStack::new().layer(app);
/// let mut req = Request::new(Full::new(Bytes::new()));
/// // The TCP peer, for the per-address rate limit (what the server's accept loop inserts).
/// req.extensions_mut().insert(PeerAddr(([203, 0, 113, 7], 40000).into()));
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(res.headers()["x-content-type-options"], "nosniff");
/// # }
/// ```
pub struct ServerService<S> {
    engine: Engine<S>,
}

impl<S: Clone> Clone for ServerService<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ServerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService")
            .field("inner", self.engine.inner())
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerService<S>
where
    S: Service<Request<StackBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<tower::BoxError>,
    ResBody: From<Bytes> + Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ServerFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.engine.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        self.engine.call(req)
    }
}

/// Replaces the field of an error with `field`.
fn at(field: &str) -> impl FnOnce(ConfigError) -> ConfigError + '_ {
    move |e| ConfigError::new(e.kind(), field.to_owned(), e.reason().to_owned())
}

/// Puts `prefix.` before the field of an error unless it already starts with it.
fn under(prefix: &'static str) -> impl Fn(ConfigError) -> ConfigError {
    move |e| {
        let rest = e.field().strip_prefix(prefix);
        if rest.is_some_and(|r| r.is_empty() || r.starts_with('.') || r.starts_with('[')) {
            e
        } else {
            e.within(prefix)
        }
    }
}

fn rename(e: ConfigError, f: impl FnOnce(&str) -> String) -> ConfigError {
    let field = f(e.field());
    ConfigError::new(e.kind(), field, e.reason().to_owned())
}

fn header_style(h: RateLimitHeaders) -> HeaderStyle {
    match h {
        RateLimitHeaders::Ietf => HeaderStyle::Ietf,
        RateLimitHeaders::Legacy => HeaderStyle::Legacy,
        RateLimitHeaders::Both => HeaderStyle::IetfAndLegacy,
        RateLimitHeaders::None => HeaderStyle::None,
    }
}

fn quota(q: &QuotaConfig, path: &str) -> Result<Quota, ConfigError> {
    if q.requests == 0 {
        return Err(ConfigError::out_of_range(
            format!("{path}.requests"),
            "must be at least 1",
        ));
    }
    let burst = q.burst.unwrap_or(q.requests);
    if burst == 0 {
        return Err(ConfigError::out_of_range(
            format!("{path}.burst"),
            "must be at least 1",
        ));
    }
    Quota::try_new(q.requests, q.per.get())
        .map_err(|e| ConfigError::new(e.kind(), format!("{path}.per"), e.reason().to_owned()))?
        .try_with_burst(burst)
        .map_err(|e| ConfigError::new(e.kind(), format!("{path}.burst"), e.reason().to_owned()))
}

pub(super) fn signing_config(s: &SigningSection) -> Result<SigningConfig, ConfigError> {
    let mut keys = Vec::with_capacity(s.keys.len());
    for (i, k) in s.keys.iter().enumerate() {
        let secret = k
            .secret
            .resolve()
            .map_err(|e| e.within(&format!("keys[{i}].secret")))?;
        keys.push(KeyConfig {
            id: k.id.clone(),
            secret: zeroize::Zeroizing::new(secret.expose().to_owned()),
            not_before: k.not_before,
            not_after: k.not_after,
        });
    }
    Ok(SigningConfig {
        keys,
        grace_period_secs: s.grace_period.map(|d| d.get().as_secs()),
        required_components: s.required_components.clone(),
        max_age_secs: s.max_age.map(|d| d.get().as_secs()),
        clock_skew_secs: s.clock_skew.map(|d| d.get().as_secs()),
        require_nonce: s.require_nonce,
        body_limit: s
            .body_limit
            .map(|b| usize::try_from(b.get()).unwrap_or(usize::MAX)),
        assume_https: s.assume_https,
    })
}

fn verify_layer(s: &SigningSection) -> Result<VerifySignatureLayer, ConfigError> {
    let c = signing_config(s)?;
    let ring = c.key_ring().map_err(|e| {
        // `keys[1].signing.secret` from the key parser: the config path is `keys[1].secret`.
        rename(e, |f| f.replace(".signing.secret", ".secret"))
    })?;
    Ok(VerifySignatureLayer::with_policy(ring, c.policy()?))
}

pub(super) fn breaker_layer(
    b: &BreakerSection,
    path: &str,
) -> Result<CircuitBreakerLayer, ConfigError> {
    if b.consecutive_failures == 0 {
        return Err(ConfigError::out_of_range(
            format!("{path}.consecutive_failures"),
            "must be at least 1",
        ));
    }
    let config = BreakerConfig::consecutive_failures(b.consecutive_failures)
        .cooldown(b.cooldown.get())
        .half_open_permits(b.half_open_permits);
    CircuitBreakerLayer::from_config(config).map_err(|e| {
        let field = e.field().rsplit('.').next().unwrap_or_default().to_owned();
        ConfigError::new(e.kind(), format!("{path}.{field}"), e.reason().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, future::Ready};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;

    use super::*;

    /// A handler for any request body.
    #[derive(Clone, Copy)]
    struct Handler;

    impl<B> Service<Request<B>> for Handler {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
        }
    }

    type Fut = <ServerService<Handler> as Service<Request<Full<Bytes>>>>::Future;

    /// One future for every configuration, a few words around the application's: every
    /// state that is rare (a store doing I/O, verification reading the body, a refusal
    /// reading a small body) is boxed.
    #[test]
    fn the_future_is_small_whatever_is_on() {
        let (stack, app) = (
            size_of::<Fut>(),
            size_of::<Ready<Result<Response<Full<Bytes>>, Infallible>>>(),
        );
        eprintln!("response future: {stack} bytes, the application's {app}");
        // 544 bytes on x86_64 today: the per-address and per-principal rate-limit headers
        // (112 each), the CORS headers (88), the breaker's permit (40), the request id (40).
        assert!(stack <= app + 600, "{stack} bytes around {app}");
    }
}
