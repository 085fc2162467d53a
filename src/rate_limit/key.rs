//! What a request is limited by: key extractors.

use std::{
    any::type_name,
    fmt,
    hash::Hash,
    marker::PhantomData,
    net::{IpAddr, Ipv6Addr},
};

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use crate::{
    error::ConfigError,
    net::{TrustedProxies, peer_addr, resolve},
};

/// The parts of a request a key extractor or a cost function may look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (peer address, authenticated principal, request id, ...).
    pub extensions: &'a Extensions,
}

impl<'a> RequestInfo<'a> {
    /// The view of `req`.
    pub fn new<B>(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// A key could not be extracted because the server is misconfigured (answered with a 500).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyError {
    kind: KeyErrorKind,
    what: &'static str,
}

/// What kind of misconfiguration a [`KeyError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// No peer address in the request extensions.
    MissingPeerAddr,
    /// A required extension is missing.
    MissingExtension,
    /// Another reason, from a custom extractor.
    Other,
}

impl KeyError {
    /// No peer address: the server was not started with connect info.
    pub fn missing_peer_addr() -> Self {
        Self {
            kind: KeyErrorKind::MissingPeerAddr,
            what: "no peer address in the request extensions: serve with \
                   `into_make_service_with_connect_info::<SocketAddr>()` or insert \
                   `battlement::net::PeerAddr`",
        }
    }

    /// A required extension of type `what` is missing (a layer that sets it is not in front).
    pub fn missing_extension(what: &'static str) -> Self {
        Self {
            kind: KeyErrorKind::MissingExtension,
            what,
        }
    }

    /// Another misconfiguration, described by `what` (logged, never sent to clients).
    pub fn other(what: &'static str) -> Self {
        Self {
            kind: KeyErrorKind::Other,
            what,
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }

    /// The `detail` of the 500 sent to the client, when it can say something without internals:
    /// a missing peer address is the same fix for every server (issue 18), while a custom
    /// extractor's `what` may name internals and stays in the log.
    pub(crate) fn client_detail(&self) -> Option<&'static str> {
        match self.kind {
            KeyErrorKind::MissingPeerAddr => Some(MISSING_PEER_DETAIL),
            _ => None,
        }
    }
}

/// The `detail` of the 500 answered when no peer address is in the request (issue 18): the fix,
/// for the operator who reads the body with curl, and nothing about the request or the limits.
pub(crate) const MISSING_PEER_DETAIL: &str = "The server cannot see the client's address, so \
    its per-address rate limit cannot run: the operator must serve the application with \
    `into_make_service_with_connect_info::<SocketAddr>()` (axum) or insert a \
    `battlement::net::PeerAddr` in each request's extensions.";

impl fmt::Debug for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyError")
            .field("kind", &self.kind)
            .field("what", &self.what)
            .finish()
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KeyErrorKind::MissingExtension => write!(
                f,
                "rate limit misconfigured: required extension `{}` is missing (put the layer \
                 that sets it outside the rate limiter)",
                self.what
            ),
            _ => write!(f, "rate limit misconfigured: {}", self.what),
        }
    }
}

impl std::error::Error for KeyError {}

/// Turns a request into the key whose bucket it is charged to.
///
/// `Ok(None)` means the limit does not apply to this request (it passes this limit untouched);
/// `Err` means the server is misconfigured (the layer answers 500 and logs one error).
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key.
    type Key: Hash + Eq + Send + Sync + 'static;

    /// The key of `req`.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the request lacks what the extractor needs because of a
    /// misconfiguration (never because of what the client sent).
    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<Self::Key>, KeyError>;

    /// Calls `f` with a reference to the key of `req`. The layer uses this; override it when
    /// the key can be borrowed from the request (as [`ExtensionKey`] does) to save a clone.
    ///
    /// # Errors
    ///
    /// As [`extract`](Self::extract).
    fn with_key<T>(
        &self,
        req: &RequestInfo<'_>,
        f: impl FnOnce(&Self::Key) -> T,
    ) -> Result<Option<T>, KeyError>
    where
        Self: Sized,
    {
        Ok(self.extract(req)?.map(|key| f(&key)))
    }
}

/// Masks `ip` to its /`v6_prefix` network when IPv6 (IPv4-mapped addresses count as IPv4).
pub fn mask_ip(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if v6_prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(v6_prefix.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
        v4 => v4,
    }
}

fn check_prefix(len: u8) -> Result<u8, ConfigError> {
    if (1..=128).contains(&len) {
        Ok(len)
    } else {
        Err(ConfigError::out_of_range(
            "rate_limit.key.ipv6_prefix",
            "must be between 1 and 128 (64 is one customer's network)",
        ))
    }
}

/// The TCP peer's address ([`crate::net::peer_addr`]), IPv6 grouped by /64.
///
/// A missing peer address is a misconfiguration: a 500 problem whose `detail` names the fix
/// (serve with connect info, or insert [`PeerAddr`](crate::net::PeerAddr)), and one error logged.
#[derive(Clone, Copy, Debug)]
pub struct PeerIp {
    v6_prefix: u8,
}

impl PeerIp {
    /// By peer address, IPv6 grouped by /64.
    pub const fn new() -> Self {
        Self { v6_prefix: 64 }
    }

    /// Groups IPv6 addresses by /`len` instead (48 or 56 when customers get bigger blocks,
    /// 128 for single addresses).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless `len` is between 1 and 128.
    pub fn with_ipv6_prefix(mut self, len: u8) -> Result<Self, ConfigError> {
        self.v6_prefix = check_prefix(len)?;
        Ok(self)
    }
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<IpAddr>, KeyError> {
        match peer_addr(req.extensions) {
            Some(addr) => Ok(Some(mask_ip(addr.ip(), self.v6_prefix))),
            None => Err(KeyError::missing_peer_addr()),
        }
    }
}

/// The client's address behind trusted proxies ([`crate::net::resolve`]): `Forwarded` or
/// `X-Forwarded-For` read from the right, believed only from [`TrustedProxies`]; IPv6 grouped
/// by /64.
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: TrustedProxies,
    v6_prefix: u8,
}

impl ClientIp {
    /// By client address, believing forwarding headers only from `trusted`.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self {
            trusted,
            v6_prefix: 64,
        }
    }

    /// Groups IPv6 addresses by /`len` instead.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless `len` is between 1 and 128.
    pub fn with_ipv6_prefix(mut self, len: u8) -> Result<Self, ConfigError> {
        self.v6_prefix = check_prefix(len)?;
        Ok(self)
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<IpAddr>, KeyError> {
        let peer = peer_addr(req.extensions).ok_or_else(KeyError::missing_peer_addr)?;
        let view = resolve(req.headers, Some(peer.ip()), &self.trusted);
        let ip = view.client_ip.unwrap_or(peer.ip());
        Ok(Some(mask_ip(ip, self.v6_prefix)))
    }
}

/// The value of a header (an API key, a tenant id). Requests without it share one bucket,
/// so leaving it out is no way around the limit.
///
/// The value is only hashed into the store's fingerprint: it is never stored or logged.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// By the value of `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl KeyExtractor for HeaderKey {
    type Key = Option<HeaderValue>;

    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<Self::Key>, KeyError> {
        Ok(Some(req.headers.get(&self.name).cloned()))
    }
}

/// One bucket for every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    type Key = ();

    fn extract(&self, _: &RequestInfo<'_>) -> Result<Option<()>, KeyError> {
        Ok(Some(()))
    }
}

/// A request extension of type `T`: the authenticated principal, a signing key id, a tenant.
///
/// Requests without it are not limited by this limit (an anonymous route; keep a per-IP limit in
/// front), unless [`required`](Self::required), when a missing one is a misconfiguration (500).
pub struct ExtensionKey<T> {
    required: bool,
    _marker: PhantomData<fn() -> T>,
}

impl<T> ExtensionKey<T> {
    /// By the extension `T`; requests without it pass.
    pub const fn new() -> Self {
        Self {
            required: false,
            _marker: PhantomData,
        }
    }

    /// A request without `T` is a misconfiguration: 500 and one error logged.
    #[must_use]
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ExtensionKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ExtensionKey<T> {}

impl<T> fmt::Debug for ExtensionKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionKey")
            .field("type", &type_name::<T>())
            .field("required", &self.required)
            .finish()
    }
}

impl<T> KeyExtractor for ExtensionKey<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = T;

    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<T>, KeyError> {
        self.with_key(req, T::clone)
    }

    fn with_key<R>(
        &self,
        req: &RequestInfo<'_>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<Option<R>, KeyError> {
        match req.extensions.get::<T>() {
            Some(t) => Ok(Some(f(t))),
            None if self.required => Err(KeyError::missing_extension(type_name::<T>())),
            None => Ok(None),
        }
    }
}

/// A key from a closure `Fn(&RequestInfo) -> Option<K>` (made with [`key_fn`]).
#[derive(Clone, Copy)]
pub struct KeyFn<F, K> {
    f: F,
    _marker: PhantomData<fn() -> K>,
}

/// A key extractor from a closure; `None` means the limit does not apply to the request.
///
/// ```
/// use battlement::rate_limit::key_fn;
/// let by_tenant = key_fn(|req| {
///     req.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned)
/// });
/// # let _ = by_tenant;
/// ```
pub fn key_fn<F, K>(f: F) -> KeyFn<F, K>
where
    F: Fn(&RequestInfo<'_>) -> Option<K>,
{
    KeyFn {
        f,
        _marker: PhantomData,
    }
}

impl<F, K> fmt::Debug for KeyFn<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn")
            .field("key", &type_name::<K>())
            .finish_non_exhaustive()
    }
}

impl<F, K> KeyExtractor for KeyFn<F, K>
where
    F: Fn(&RequestInfo<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash + Eq + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, req: &RequestInfo<'_>) -> Result<Option<K>, KeyError> {
        Ok((self.f)(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::PeerAddr;

    fn req_from(peer: Option<&str>, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        if let Some(p) = peer {
            req.extensions_mut().insert(PeerAddr(p.parse().unwrap()));
        }
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        req
    }

    #[test]
    fn ipv6_grouped_by_prefix() {
        let k = PeerIp::new();
        let a = req_from(Some("[2001:db8:1:2:aaaa::1]:5000"), &[]);
        let b = req_from(Some("[2001:db8:1:2:ffff::9]:5001"), &[]);
        let c = req_from(Some("[2001:db8:1:3::1]:5001"), &[]);
        let ka = k.extract(&RequestInfo::new(&a)).unwrap();
        assert_eq!(ka, k.extract(&RequestInfo::new(&b)).unwrap());
        assert_ne!(ka, k.extract(&RequestInfo::new(&c)).unwrap());
        let k128 = PeerIp::new().with_ipv6_prefix(128).unwrap();
        assert_ne!(
            k128.extract(&RequestInfo::new(&a)).unwrap(),
            k128.extract(&RequestInfo::new(&b)).unwrap()
        );
        assert!(PeerIp::new().with_ipv6_prefix(0).is_err());
        assert!(PeerIp::new().with_ipv6_prefix(129).is_err());
        let mapped = req_from(Some("[::ffff:1.2.3.4]:1"), &[]);
        assert_eq!(
            k.extract(&RequestInfo::new(&mapped)).unwrap(),
            Some("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn missing_peer_is_an_error() {
        let r = req_from(None, &[]);
        let err = PeerIp::new().extract(&RequestInfo::new(&r)).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::MissingPeerAddr);
        assert!(err.to_string().contains("connect_info"));
    }

    #[test]
    fn client_ip_trusts_only_proxies() {
        let k = ClientIp::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
        let spoof = req_from(Some("203.0.113.5:1"), &[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            k.extract(&RequestInfo::new(&spoof)).unwrap(),
            Some("203.0.113.5".parse().unwrap())
        );
        let proxied = req_from(
            Some("10.0.0.1:1"),
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.1")],
        );
        assert_eq!(
            k.extract(&RequestInfo::new(&proxied)).unwrap(),
            Some("198.51.100.1".parse().unwrap())
        );
    }

    #[test]
    fn extension_and_header_keys() {
        #[derive(Clone, PartialEq, Eq, Hash, Debug)]
        struct Principal(&'static str);
        let mut r = req_from(None, &[("x-api-key", "k1")]);
        assert_eq!(
            ExtensionKey::<Principal>::new()
                .extract(&RequestInfo::new(&r))
                .unwrap(),
            None
        );
        assert_eq!(
            ExtensionKey::<Principal>::new()
                .required()
                .extract(&RequestInfo::new(&r))
                .unwrap_err()
                .kind(),
            KeyErrorKind::MissingExtension
        );
        r.extensions_mut().insert(Principal("alice"));
        assert_eq!(
            ExtensionKey::<Principal>::new()
                .extract(&RequestInfo::new(&r))
                .unwrap(),
            Some(Principal("alice"))
        );
        let h = HeaderKey::new(HeaderName::from_static("x-api-key"));
        assert_eq!(
            h.extract(&RequestInfo::new(&r)).unwrap(),
            Some(Some(HeaderValue::from_static("k1")))
        );
        let f = key_fn(|r: &RequestInfo<'_>| Some(r.uri.path().len()));
        assert_eq!(f.extract(&RequestInfo::new(&r)).unwrap(), Some(1));
    }
}
