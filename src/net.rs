//! Peer addresses, trusted proxies and what they forward (`Forwarded`, `X-Forwarded-*`).
//!
//! Several layers need to know who the client is and whether it used HTTPS: the HTTPS redirect
//! and HSTS, the request-id layer (trusting incoming ids only from proxies), the rate limiter
//! (keying on the client address). Behind a load balancer the TCP peer is the proxy, and the
//! client is named in `Forwarded` (RFC 7239) or `X-Forwarded-For`. Those headers are written by
//! whoever sends the request, so this module believes them **only when the TCP peer is in a
//! configured [`TrustedProxies`] range**, and walks them from the right, skipping the hops that
//! are trusted proxies themselves: the first address that is not a trusted proxy is the client.
//!
//! ```
//! use battlement::net::{resolve, Scheme, TrustedProxies};
//! use http::HeaderMap;
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.3".parse().unwrap());
//! headers.insert("x-forwarded-proto", "https".parse().unwrap());
//!
//! // From the load balancer: believed.
//! let view = resolve(&headers, Some("10.0.0.2".parse().unwrap()), &proxies);
//! assert_eq!(view.client_ip, Some("198.51.100.7".parse().unwrap()));
//! assert_eq!(view.scheme, Some(Scheme::Https));
//!
//! // From anyone else: ignored.
//! let view = resolve(&headers, Some("203.0.113.9".parse().unwrap()), &proxies);
//! assert_eq!(view.client_ip, Some("203.0.113.9".parse().unwrap()));
//! assert_eq!(view.scheme, None);
//! ```
//!
//! # Where the peer address comes from
//!
//! [`peer_addr`] reads a [`PeerAddr`] extension, and with the `axum` feature (on by default)
//! axum's `ConnectInfo<SocketAddr>`, which `Router::into_make_service_with_connect_info` inserts.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::{Extensions, HeaderMap, HeaderName, header::FORWARDED};
use ipnet::IpNet;

use crate::error::ConfigError;

/// The most hops of a `Forwarded`/`X-Forwarded-For` chain that are looked at; a longer chain is
/// treated as untrustworthy past that point.
pub const MAX_FORWARDED_HOPS: usize = 32;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The address of the TCP peer, as a request extension.
///
/// Insert it yourself when you serve with plain hyper; axum's `ConnectInfo<SocketAddr>` is read
/// too when the `axum` feature is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The TCP peer's address from the request extensions: [`PeerAddr`], or axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`).
pub fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    None
}

/// The request's URI as the client sent it.
///
/// A router that strips a prefix before calling a nested service (axum's `Router::nest`)
/// rewrites `req.uri()`; axum keeps the original in its `OriginalUri` extension, which this
/// returns when the `axum` feature is on. Anything that must see what the client sent (the
/// covered components of a signature, a redirect's `Location`) reads the URI through here.
pub fn original_uri<B>(req: &http::Request<B>) -> &http::Uri {
    original_uri_of(req.uri(), req.extensions())
}

/// [`original_uri`] for a request taken apart: `uri` unless the extensions hold the original.
pub fn original_uri_of<'a>(uri: &'a http::Uri, extensions: &'a Extensions) -> &'a http::Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) =
        extensions.get::<axum::extract::OriginalUri>()
    {
        return original;
    }
    #[cfg(not(feature = "axum"))]
    let _ = extensions;
    uri
}

/// The address ranges of the proxies whose forwarding headers are believed.
///
/// Empty by default: no forwarding header is believed until you say which proxies send them.
/// Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    /// Trusts no proxy: forwarding headers are always ignored.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts the given ranges, each a CIDR (`"10.0.0.0/8"`, `"2001:db8::/32"`) or a single
    /// address (`"127.0.0.1"`). Whitespace around an entry is trimmed (`" 10.0.0.0/8 "` is
    /// `10.0.0.0/8`); the [audit](crate::stack::audit) judges these parsed ranges, not the
    /// strings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first entry that is not an address or a CIDR range.
    pub fn new<I, S>(ranges: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for (i, range) in ranges.into_iter().enumerate() {
            let range = range.as_ref().trim();
            let net = range
                .parse::<IpNet>()
                .or_else(|_| range.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        format!("trusted_proxies[{i}]"),
                        format!(
                            "`{}` is not an IP address or CIDR range",
                            truncate(range, 64)
                        ),
                    )
                })?;
            nets.push(net.trunc());
        }
        Ok(Self { nets: nets.into() })
    }

    /// Loopback only (`127.0.0.0/8`, `::1`): a proxy on the same machine.
    pub fn loopback() -> Self {
        Self::from_nets(["127.0.0.0/8", "::1/128"])
    }

    /// Loopback and the private ranges (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`): a proxy
    /// somewhere in your own network. Only right when clients cannot reach you from those
    /// ranges directly.
    pub fn private_networks() -> Self {
        Self::from_nets([
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "::1/128",
            "fc00::/7",
        ])
    }

    fn from_nets<const N: usize>(nets: [&str; N]) -> Self {
        Self {
            nets: nets
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok())
                .collect::<Vec<_>>()
                .into(),
        }
    }

    /// Whether no range is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses count as IPv4) is in a trusted range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The trusted ranges.
    pub fn ranges(&self) -> impl Iterator<Item = String> + '_ {
        self.nets.iter().map(|n| n.to_string())
    }

    /// How many public addresses the ranges cover, overlaps counted once: IPv4 addresses
    /// outside the private, loopback, link-local, CGNAT, documentation, benchmarking,
    /// multicast and reserved blocks, and IPv6 addresses in the global unicast block
    /// `2000::/3`. The audit's measure of "trusts public address space at large".
    pub(crate) fn public_coverage(&self) -> (u128, u128) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in self.nets.iter() {
            match net {
                IpNet::V4(n) => v4.push((
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.broadcast())),
                )),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        let v4 = merge(v4);
        let total: u128 = v4.iter().map(|&(lo, hi)| hi - lo + 1).sum();
        let not_public: u128 = v4
            .iter()
            .flat_map(|&r| {
                NOT_PUBLIC_V4
                    .iter()
                    .map(move |&(lo, hi)| overlap(r, (lo, hi)))
            })
            .sum();
        // `2000::/3`: 2000:: to 3fff:ffff:...
        let global_v6 = (0x2000u128 << 112, (0x4000u128 << 112) - 1);
        let v6 = merge(v6).into_iter().map(|r| overlap(r, global_v6)).sum();
        (total - not_public, v6)
    }
}

/// The IPv4 blocks that are not public (RFC 6890 and friends), as inclusive `u32` ranges,
/// disjoint: `0/8`, `10/8`, `100.64/10`, `127/8`, `169.254/16`, `172.16/12`, `192.0.0/24`,
/// `192.0.2/24`, `192.168/16`, `198.18/15`, `198.51.100/24`, `203.0.113/24`, `224/3`.
const NOT_PUBLIC_V4: [(u128, u128); 13] = [
    v4_block([0, 0, 0, 0], 8),
    v4_block([10, 0, 0, 0], 8),
    v4_block([100, 64, 0, 0], 10),
    v4_block([127, 0, 0, 0], 8),
    v4_block([169, 254, 0, 0], 16),
    v4_block([172, 16, 0, 0], 12),
    v4_block([192, 0, 0, 0], 24),
    v4_block([192, 0, 2, 0], 24),
    v4_block([192, 168, 0, 0], 16),
    v4_block([198, 18, 0, 0], 15),
    v4_block([198, 51, 100, 0], 24),
    v4_block([203, 0, 113, 0], 24),
    v4_block([224, 0, 0, 0], 3),
];

const fn v4_block(a: [u8; 4], prefix: u32) -> (u128, u128) {
    let lo = u32::from_be_bytes(a) as u128;
    (lo, lo + (1u128 << (32 - prefix)) - 1)
}

/// Sorted, disjoint, non-adjacent inclusive ranges covering the same addresses.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The number of addresses in both inclusive ranges (at most 2^125 here: one side is always
/// an IPv4 range or `2000::/3`, so `hi - lo + 1` cannot overflow).
fn overlap(a: (u128, u128), b: (u128, u128)) -> u128 {
    let lo = a.0.max(b.0);
    let hi = a.1.min(b.1);
    if lo > hi { 0 } else { hi - lo + 1 }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for net in self.nets.iter() {
            list.entry(&format_args!("{net}"));
        }
        list.finish()
    }
}

/// A URI scheme as far as the security layers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_matches('"');
        if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") {
            Some(Self::Https)
        } else if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") {
            Some(Self::Http)
        } else {
            None
        }
    }
}

/// What the request says about its client, after the trust rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyView<'h> {
    /// The TCP peer was a trusted proxy.
    pub via_trusted_proxy: bool,
    /// The client address: the first untrusted hop from the right, or the peer itself.
    pub client_ip: Option<IpAddr>,
    /// The scheme the client used, as told by a trusted proxy (`None` when no trusted proxy
    /// said; look at the request URI or the connection then).
    pub scheme: Option<Scheme>,
    /// The host the client asked for, as told by a trusted proxy.
    pub host: Option<&'h str>,
}

/// Works out the client address, scheme and host from the peer and the forwarding headers.
///
/// Forwarding headers are read only when `peer` is in `trusted`. `Forwarded` (RFC 7239) wins
/// over `X-Forwarded-*` when both are present. Unparseable, obfuscated or `unknown` hops stop
/// the walk: the last trusted hop is then reported as the client, which is the safe choice for
/// rate limiting (a spoofer can only hurt their own proxy's bucket).
pub fn resolve<'h>(
    headers: &'h HeaderMap,
    peer: Option<IpAddr>,
    trusted: &TrustedProxies,
) -> ProxyView<'h> {
    let peer = peer.map(|p| p.to_canonical());
    let mut view = ProxyView {
        via_trusted_proxy: false,
        client_ip: peer,
        scheme: None,
        host: None,
    };
    let Some(peer) = peer else { return view };
    if trusted.is_empty() || !trusted.contains(peer) {
        return view;
    }
    view.via_trusted_proxy = true;
    if headers.contains_key(FORWARDED) {
        resolve_forwarded(headers, peer, trusted, &mut view);
    } else if headers.contains_key(&X_FORWARDED_FOR) || headers.contains_key(&X_FORWARDED_PROTO) {
        resolve_x_forwarded(headers, peer, trusted, &mut view);
    }
    view
}

fn header_items<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Vec<&'h str>> {
    let mut items = Vec::new();
    for value in headers.get_all(name) {
        let value = value.to_str().ok()?;
        for item in value.split(',') {
            items.push(item.trim());
            if items.len() > MAX_FORWARDED_HOPS * 2 {
                return None;
            }
        }
    }
    Some(items)
}

fn resolve_forwarded<'h>(
    headers: &'h HeaderMap,
    peer: IpAddr,
    trusted: &TrustedProxies,
    view: &mut ProxyView<'h>,
) {
    let Some(elements) = header_items(headers, &FORWARDED) else {
        return;
    };
    let mut last_trusted = peer;
    for (walked, element) in elements.iter().rev().enumerate() {
        if walked >= MAX_FORWARDED_HOPS {
            break;
        }
        let mut node = None;
        let mut proto = None;
        let mut host = None;
        for pair in element.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let k = k.trim();
            let v = v.trim().trim_matches('"');
            if k.eq_ignore_ascii_case("for") {
                node = Some(v);
            } else if k.eq_ignore_ascii_case("proto") {
                proto = Scheme::parse(v);
            } else if k.eq_ignore_ascii_case("host") {
                host = Some(v).filter(|h| !h.is_empty());
            }
        }
        // This element was written by a trusted proxy (`last_trusted`) about the connection it
        // received, so its `proto` and `host` are believed.
        view.scheme = proto.or(view.scheme);
        view.host = host.or(view.host);
        match node.and_then(parse_node) {
            Some(ip) if trusted.contains(ip) => {
                last_trusted = ip;
                view.client_ip = Some(ip);
            }
            Some(ip) => {
                view.client_ip = Some(ip);
                return;
            }
            None => {
                view.client_ip = Some(last_trusted);
                return;
            }
        }
    }
}

fn resolve_x_forwarded<'h>(
    headers: &'h HeaderMap,
    peer: IpAddr,
    trusted: &TrustedProxies,
    view: &mut ProxyView<'h>,
) {
    let protos = header_items(headers, &X_FORWARDED_PROTO).unwrap_or_default();
    let hosts = header_items(headers, &X_FORWARDED_HOST).unwrap_or_default();
    let fors = header_items(headers, &X_FORWARDED_FOR);
    // Proxies either append to every list (same length) or only the edge one writes them.
    let pick = |list: &[&'h str], index: Option<usize>, len: usize| -> Option<&'h str> {
        match (list.len(), index) {
            (0, _) => None,
            (1, _) => Some(list[0]),
            (n, Some(i)) if n == len => Some(list[i]),
            (n, _) => Some(list[n - 1]),
        }
    };
    let Some(fors) = fors else {
        view.client_ip = Some(peer);
        view.scheme = pick(&protos, None, 0).and_then(Scheme::parse);
        view.host = pick(&hosts, None, 0).filter(|h| !h.is_empty());
        return;
    };
    let mut client_index = None;
    let mut last_trusted = peer;
    for (walked, (i, item)) in fors.iter().enumerate().rev().enumerate() {
        if walked >= MAX_FORWARDED_HOPS {
            break;
        }
        match parse_node(item) {
            Some(ip) if trusted.contains(ip) => {
                last_trusted = ip;
                client_index = Some(i);
            }
            Some(_) => {
                client_index = Some(i);
                break;
            }
            None => {
                client_index = None;
                break;
            }
        }
    }
    view.client_ip = Some(
        client_index
            .and_then(|i| parse_node(fors[i]))
            .unwrap_or(last_trusted),
    );
    view.scheme = pick(&protos, client_index, fors.len()).and_then(Scheme::parse);
    view.host = pick(&hosts, client_index, fors.len()).filter(|h| !h.is_empty());
}

/// Parses a forwarded node: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, or a
/// bare IPv6 address (as `X-Forwarded-For` often carries). `unknown` and obfuscated ids are
/// `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if node.len() > 64 {
        return None;
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    node.parse::<SocketAddr>()
        .ok()
        .map(|sa| sa.ip().to_canonical())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_coverage_counts_each_public_address_once() {
        let cov = |r: &[&str]| TrustedProxies::new(r).unwrap().public_coverage();
        assert_eq!(cov(&[]), (0, 0));
        assert_eq!(cov(&["1.0.0.0/8", "1.0.0.0/9", "1.2.3.4"]), (1 << 24, 0));
        // Adjacent halves merge; the private part of a range does not count.
        assert_eq!(cov(&["1.0.0.0/9", "1.128.0.0/9"]), (1 << 24, 0));
        assert_eq!(cov(&["10.0.0.0/7"]), (1 << 24, 0));
        assert_eq!(cov(&["10.0.0.0/8", "192.168.1.0/24", "fc00::/7"]), (0, 0));
        let all_v4 = (1u128 << 32)
            - (1 << 24) * 3
            - (1 << 22)
            - (1 << 16) * 2
            - (1 << 20)
            - 256 * 4
            - (1 << 17)
            - (1 << 29);
        assert_eq!(cov(&["0.0.0.0/0"]), (all_v4, 0));
        assert_eq!(cov(&["0.0.0.0/1", "128.0.0.0/1"]), (all_v4, 0));
        assert_eq!(cov(&["::/0"]), (0, 1 << 125));
        assert_eq!(cov(&["2001:db8::/32", "2001:db8::/33"]), (0, 1 << 96));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn rejects_bad_ranges() {
        let err = TrustedProxies::new(["10.0.0.0/8", "nope"]).unwrap_err();
        assert_eq!(err.field(), "trusted_proxies[1]");
        assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
        let ok = TrustedProxies::new(["10.1.2.3/8", "::1"]).unwrap();
        assert!(ok.contains(ip("10.200.0.1")));
        assert!(ok.contains(ip("::ffff:10.0.0.1")));
        assert!(ok.contains(ip("::1")));
        assert!(!ok.contains(ip("11.0.0.1")));
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ]);
        let v = resolve(&h, Some(ip("8.8.8.8")), &TrustedProxies::loopback());
        assert_eq!(v.client_ip, Some(ip("8.8.8.8")));
        assert_eq!(v.scheme, None);
        assert!(!v.via_trusted_proxy);
        let v = resolve(&h, Some(ip("127.0.0.1")), &TrustedProxies::none());
        assert_eq!(v.client_ip, Some(ip("127.0.0.1")));
        assert_eq!(v.scheme, None);
    }

    #[test]
    fn xff_walks_from_the_right() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        // The client prepended a spoofed address; the edge proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.3")]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("198.51.100.7")));
        // Split over several lines.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("198.51.100.7")));
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.3")]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("10.0.0.3")));
        // Bare IPv6.
        let h = headers(&[("x-forwarded-for", "2001:db8::7")]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("2001:db8::7")));
    }

    #[test]
    fn forwarded_header() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6;proto=http, for=\"[2001:db8::7]:4711\";proto=https;host=example.com, for=10.0.0.9;proto=http",
        )]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("2001:db8::7")));
        assert_eq!(v.scheme, Some(Scheme::Https));
        assert_eq!(v.host, Some("example.com"));
        let h = headers(&[("forwarded", "for=unknown;proto=https")]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("10.0.0.2")));
        assert_eq!(v.scheme, Some(Scheme::Https));
    }

    #[test]
    fn proto_lists() {
        let trusted = TrustedProxies::loopback();
        let h = headers(&[("x-forwarded-proto", "https")]);
        let v = resolve(&h, Some(ip("127.0.0.1")), &trusted);
        assert_eq!(v.scheme, Some(Scheme::Https));
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 127.0.0.2"),
            ("x-forwarded-proto", "https, http"),
        ]);
        let v = resolve(&h, Some(ip("127.0.0.1")), &trusted);
        assert_eq!(v.client_ip, Some(ip("1.1.1.1")));
        assert_eq!(v.scheme, Some(Scheme::Https));
    }

    #[test]
    fn long_chains_are_bounded() {
        let trusted = TrustedProxies::new(["0.0.0.0/0"]).unwrap();
        let long = vec!["1.1.1.1"; 10_000].join(",");
        let h = headers(&[("x-forwarded-for", &long)]);
        let v = resolve(&h, Some(ip("10.0.0.2")), &trusted);
        assert_eq!(v.client_ip, Some(ip("10.0.0.2")));
    }
}
