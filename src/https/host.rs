//! Strict parsing of the host a request names, and the allow-list it is matched against.

use std::{fmt::Write as _, net::Ipv6Addr};

use crate::error::ConfigError;

/// The longest authority looked at: a 253-byte name, `:` and a 5-digit port, with room to spare.
const MAX_AUTHORITY: usize = 262;

/// A host as the request named it, after validation: a DNS name or IPv4 address (ASCII letters,
/// digits, `-` and `.` only, any case, one trailing dot allowed), or an IPv6 literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host<'a> {
    Name(&'a str),
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// Appends the host as it goes in a URL: lowercase, without a trailing dot.
    pub(crate) fn write_to(&self, out: &mut String) {
        match self {
            Host::Name(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                out.extend(name.chars().map(|c| c.to_ascii_lowercase()));
            }
            Host::Ipv6(ip) => {
                // Writing to a `String` cannot fail.
                let _ = write!(out, "[{ip}]");
            }
        }
    }
}

/// Parses `host[:port]` (a `Host` header, an URI authority, a forwarded host). Refuses userinfo,
/// paths, backslashes, spaces, control and non-ASCII bytes, empty labels, bad ports.
pub(crate) fn parse_authority(bytes: &[u8]) -> Option<(Host<'_>, Option<u16>)> {
    if bytes.is_empty() || bytes.len() > MAX_AUTHORITY {
        return None;
    }
    let (host, rest) = if bytes[0] == b'[' {
        let close = bytes.iter().position(|&b| b == b']')?;
        let inner = std::str::from_utf8(&bytes[1..close]).ok()?;
        // `Ipv6Addr`'s parser takes hex digits, `:` and an embedded IPv4 only (no zone id).
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        (Host::Ipv6(ip), &bytes[close + 1..])
    } else {
        let end = bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len());
        let name = &bytes[..end];
        if !valid_name(name) {
            return None;
        }
        // `valid_name` admitted ASCII only.
        let name = std::str::from_utf8(name).ok()?;
        (Host::Name(name), &bytes[end..])
    };
    let port = match rest {
        [] => None,
        [b':', digits @ ..] => Some(parse_port(digits)?),
        _ => return None,
    };
    Some((host, port))
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// A DNS name or dotted IPv4: labels of 1 to 63 letters, digits and inner hyphens, at most 253
/// bytes, one trailing dot allowed.
fn valid_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
    })
}

/// One entry of the allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `example.com` (stored lowercase, no trailing dot).
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`: any name that ends with it.
    Suffix(Box<str>),
    /// `[2001:db8::1]`.
    Ipv6(Ipv6Addr),
}

impl HostPattern {
    /// Parses an allow-list entry: a name, `*.` and a name, or a bracketed IPv6 literal; no port.
    pub(crate) fn parse(entry: &str, field: String) -> Result<Self, ConfigError> {
        let entry = entry.trim();
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let invalid = || {
            ConfigError::invalid(
                field.clone(),
                format!(
                    "`{}` is not a host name, `*.` and a host name, or a bracketed IPv6 address \
                     (no port, scheme or path)",
                    entry
                        .escape_debug()
                        .to_string()
                        .chars()
                        .take(64)
                        .collect::<String>()
                ),
            )
        };
        match parse_authority(rest.as_bytes()) {
            Some((_, Some(_))) | None => Err(invalid()),
            Some((Host::Ipv6(_), None)) if wildcard => Err(invalid()),
            Some((Host::Ipv6(ip), None)) => Ok(Self::Ipv6(ip)),
            Some((host @ Host::Name(_), None)) => {
                let mut name = String::new();
                if wildcard {
                    name.push('.');
                }
                host.write_to(&mut name);
                Ok(if wildcard {
                    Self::Suffix(name.into())
                } else {
                    Self::Exact(name.into())
                })
            }
        }
    }

    pub(crate) fn matches(&self, host: &Host<'_>) -> bool {
        match (self, host) {
            (Self::Exact(exact), Host::Name(name)) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                name.eq_ignore_ascii_case(exact)
            }
            (Self::Suffix(suffix), Host::Name(name)) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                // Names are ASCII (validated), so byte offsets are char boundaries.
                name.len() > suffix.len()
                    && name.as_bytes()[name.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
            (Self::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Option<(Host<'_>, Option<u16>)> {
        parse_authority(s.as_bytes())
    }

    #[test]
    fn accepts_names_ips_and_ports() {
        assert_eq!(ok("example.com"), Some((Host::Name("example.com"), None)));
        assert_eq!(
            ok("Example.COM:8080"),
            Some((Host::Name("Example.COM"), Some(8080)))
        );
        assert_eq!(ok("example.com."), Some((Host::Name("example.com."), None)));
        assert_eq!(ok("10.0.0.1:80"), Some((Host::Name("10.0.0.1"), Some(80))));
        assert_eq!(
            ok("[::1]:443"),
            Some((Host::Ipv6("::1".parse().unwrap()), Some(443)))
        );
        assert_eq!(ok("localhost"), Some((Host::Name("localhost"), None)));
    }

    #[test]
    fn refuses_attacks() {
        for bad in [
            "",
            "example.com@evil.com",
            "user@example.com",
            "example.com/evil",
            "example.com\\evil",
            "example.com:80@evil",
            "example.com evil",
            " example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+80",
            "example.com:80:80",
            "exa_mple.com",
            "example..com",
            ".example.com",
            "-example.com",
            "example-.com",
            "example.com?x",
            "example.com#x",
            "[::1",
            "[::1]x",
            "[fe80::1%eth0]",
            "[example.com]",
            "::1",
            "example.com\t",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        assert_eq!(parse_authority(b"example.com\x80"), None);
        assert_eq!(parse_authority("exämple.com".as_bytes()), None);
        assert_eq!(parse_authority(&[b'a'; 300]), None);
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(ok(&long_label), None);
    }

    #[test]
    fn patterns() {
        let p = |s: &str| HostPattern::parse(s, "hosts[0]".into());
        let exact = p("Example.com").unwrap();
        let wild = p("*.example.com").unwrap();
        let v6 = p("[2001:db8::1]").unwrap();
        let host = |s: &'static str| ok(s).unwrap().0;
        assert!(exact.matches(&host("example.com")));
        assert!(exact.matches(&host("EXAMPLE.com.")));
        assert!(!exact.matches(&host("www.example.com")));
        assert!(wild.matches(&host("www.example.com")));
        assert!(wild.matches(&host("a.b.Example.com")));
        assert!(!wild.matches(&host("example.com")));
        assert!(!wild.matches(&host("evilexample.com")));
        assert!(v6.matches(&host("[2001:db8:0::1]")));
        assert!(!v6.matches(&host("example.com")));
        for bad in [
            "",
            "*",
            "*.",
            "example.com:443",
            "https://example.com",
            "*.[::1]",
            "a/b",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_lowercase_without_trailing_dot() {
        let mut s = String::new();
        ok("WWW.Example.com.").unwrap().0.write_to(&mut s);
        assert_eq!(s, "www.example.com");
        let mut s = String::new();
        ok("[2001:DB8:0::1]").unwrap().0.write_to(&mut s);
        assert_eq!(s, "[2001:db8::1]");
    }

    proptest::proptest! {
        #[test]
        fn accepted_hosts_are_safe_in_a_location(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Some((host, _)) = parse_authority(&bytes) {
                let mut out = String::new();
                host.write_to(&mut out);
                proptest::prop_assert!(!out.is_empty());
                proptest::prop_assert!(out.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)));
            }
        }

        #[test]
        fn names_round_trip(name in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}", port in proptest::option::of(1u16..)) {
            let text = match port {
                Some(p) => format!("{name}:{p}"),
                None => name.clone(),
            };
            let (host, parsed_port) = parse_authority(text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(host, Host::Name(&name));
            proptest::prop_assert_eq!(parsed_port, port);
        }
    }
}
