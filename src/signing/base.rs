//! The signature base (RFC 9421 §2.5): the exact bytes that are MACed.

use std::borrow::Cow;

use http::{HeaderMap, Method, Uri};
use sfv::SerializeValue;

use super::{
    error::SignatureErrorKind,
    parse::{Component, ComponentKind},
};

/// The parts of a request the signature base is derived from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    /// Used when the URI has no scheme (origin-form on a server).
    pub(crate) default_scheme: &'static str,
}

impl<'a> Target<'a> {
    fn scheme(&self) -> Cow<'a, str> {
        match self.uri.scheme_str() {
            Some(s) if s.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(s.to_ascii_lowercase())
            }
            Some(s) => Cow::Borrowed(s),
            None => Cow::Borrowed(self.default_scheme),
        }
    }

    /// `@authority`: host lowercased, default port dropped (RFC 9421 §2.2.3). Borrowed from the
    /// request unless it has to change.
    fn authority(&self, scheme: &str) -> Option<Cow<'a, str>> {
        let raw = match self.uri.authority() {
            Some(a) => a.as_str(),
            None => self.headers.get(http::header::HOST)?.to_str().ok()?.trim(),
        };
        // Drop userinfo (never in `Host`, but an absolute URI may carry it).
        // (A byte loop: authorities are short, a `memrchr` call costs more than the scan.)
        let raw = last_byte(raw, b'@').map_or(raw, |i| &raw[i + 1..]);
        let (host, port) = split_host_port(raw)?;
        let default_port = matches!(
            (port, scheme),
            (Some("80"), "http") | (Some("443"), "https")
        );
        let keep = if port.is_none() || default_port {
            host
        } else {
            raw
        };
        if keep.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(Cow::Owned(keep.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(keep))
        }
    }
}

/// The index of the last `b` (an ASCII byte) in `s`.
fn last_byte(s: &str, b: u8) -> Option<usize> {
    s.bytes().rposition(|c| c == b)
}

/// The bytes allowed in a host: ASCII letters and digits and `-._~%!$&'()*+,;=[]:` (a table:
/// one lookup per byte).
const HOST_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"-._~%!$&'()*+,;=[]:";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// Splits `host[:port]` (IPv6 hosts in brackets), checking the characters of each part.
fn split_host_port(raw: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let (h, rest) = raw.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match last_byte(raw, b':') {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (raw, None),
        }
    };
    let host_ok = !host.is_empty() && host.bytes().all(|b| HOST_CHAR[usize::from(b)]);
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some((host, port))
}

/// The signature base (RFC 9421 §2.5) of `req` for `input`: the exact bytes that are MACed.
///
/// `assume_scheme` is used when the request URI has no scheme (origin-form). Useful to debug
/// interop and to sign or verify by hand with [`Key::sign`](super::Key::sign).
///
/// # Errors
///
/// [`SignatureErrorKind::ComponentUnavailable`] when a covered component cannot be derived
/// from the request (a missing header, a missing `@query-param`, no authority, ...).
pub fn signature_base<B>(
    req: &http::Request<B>,
    input: &super::SignatureInput,
    assume_scheme: crate::net::Scheme,
) -> Result<Vec<u8>, super::SignatureError> {
    let target = Target {
        method: req.method(),
        uri: crate::net::original_uri(req),
        headers: req.headers(),
        default_scheme: match assume_scheme {
            crate::net::Scheme::Http => "http",
            crate::net::Scheme::Https => "https",
        },
    };
    let mut out = Vec::with_capacity(512);
    write_base(&target, &input.components, &input.params_line, &mut out)
        .map_err(super::SignatureError::new)?;
    Ok(out)
}

/// Where the signature base goes: a buffer (to show or sign it later) or straight into a MAC
/// (verification needs no copy of the base).
pub(crate) trait BaseSink {
    fn put(&mut self, bytes: &[u8]);
}

impl BaseSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl BaseSink for super::key::HmacSha256 {
    fn put(&mut self, bytes: &[u8]) {
        hmac::Mac::update(self, bytes);
    }
}

/// One `identifier: value` line of the base.
fn line<W: BaseSink + ?Sized>(out: &mut W, c: &Component, value: &[u8]) {
    out.put(c.identifier().as_bytes());
    out.put(b": ");
    out.put(value);
    out.put(b"\n");
}

/// Writes the signature base for `components` and the `@signature-params` value `params_line`.
pub(crate) fn write_base<W: BaseSink + ?Sized>(
    target: &Target<'_>,
    components: &[Component],
    params_line: &str,
    out: &mut W,
) -> Result<(), SignatureErrorKind> {
    let unavailable = SignatureErrorKind::ComponentUnavailable;
    let mut scheme_cache: Option<Cow<'_, str>> = None;
    // `@authority` and `@target-uri` (usually both covered) share one derivation.
    let mut authority_cache: Option<Cow<'_, str>> = None;
    for c in components {
        let scheme = || target.scheme();
        match &c.kind {
            ComponentKind::Method => line(out, c, target.method.as_str().as_bytes()),
            ComponentKind::Scheme => {
                let s = scheme_cache.get_or_insert_with(scheme);
                line(out, c, s.as_bytes());
            }
            ComponentKind::Authority => {
                let s = scheme_cache.get_or_insert_with(scheme);
                let a = match &authority_cache {
                    Some(a) => a,
                    None => authority_cache.insert(target.authority(s).ok_or(unavailable)?),
                };
                line(out, c, a.as_bytes());
            }
            ComponentKind::TargetUri => {
                let s = scheme_cache.get_or_insert_with(scheme);
                let a = match &authority_cache {
                    Some(a) => a,
                    None => authority_cache.insert(target.authority(s).ok_or(unavailable)?),
                };
                out.put(c.identifier().as_bytes());
                out.put(b": ");
                out.put(s.as_bytes());
                out.put(b"://");
                out.put(a.as_bytes());
                out.put(path(target.uri).as_bytes());
                if let Some(q) = target.uri.query() {
                    out.put(b"?");
                    out.put(q.as_bytes());
                }
                out.put(b"\n");
            }
            ComponentKind::RequestTarget => {
                let v = target.uri.path_and_query().map_or("/", |pq| pq.as_str());
                line(out, c, if v.is_empty() { b"/" } else { v.as_bytes() });
            }
            ComponentKind::Path => line(out, c, path(target.uri).as_bytes()),
            ComponentKind::Query => {
                let q = target.uri.query().unwrap_or("");
                out.put(c.identifier().as_bytes());
                out.put(b": ?");
                out.put(q.as_bytes());
                out.put(b"\n");
            }
            ComponentKind::QueryParam(name) => {
                let wanted = decode_form(name.as_bytes());
                let mut found = false;
                for pair in target.uri.query().unwrap_or("").split('&') {
                    if pair.is_empty() {
                        continue;
                    }
                    let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if decode_form(n.as_bytes()) == wanted {
                        found = true;
                        line(out, c, encode_form(&decode_form(v.as_bytes())).as_bytes());
                    }
                }
                if !found {
                    return Err(unavailable);
                }
            }
            ComponentKind::Field { sf, key } => {
                let value = field_value(target.headers, c.name()).ok_or(unavailable)?;
                if let Some(key) = key {
                    let dict = sfv::Parser::parse_dictionary(&value).map_err(|_| unavailable)?;
                    let member = dict.get(key).ok_or(unavailable)?;
                    let s = match member {
                        sfv::ListEntry::Item(item) => item.serialize_value(),
                        sfv::ListEntry::InnerList(list) => {
                            vec![sfv::ListEntry::InnerList(list.clone())].serialize_value()
                        }
                    }
                    .map_err(|_| unavailable)?;
                    line(out, c, s.as_bytes());
                } else if *sf {
                    line(out, c, reserialize_structured(c.name(), &value)?.as_bytes());
                } else {
                    line(out, c, &value);
                }
            }
        }
    }
    out.put(b"\"@signature-params\": ");
    out.put(params_line.as_bytes());
    Ok(())
}

fn path(uri: &Uri) -> &str {
    match uri.path() {
        "" => "/",
        p => p,
    }
}

const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");

/// The value of a header field: every field line trimmed and joined with `", "` (RFC 9421 §2.1);
/// borrowed when there is one line that needs no unfolding.
fn field_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, [u8]>> {
    // Looking up by `HeaderName` skips parsing the name again; the fields most often signed
    // have one at hand.
    let mut values = match name {
        "content-digest" => headers.get_all(&CONTENT_DIGEST),
        "content-type" => headers.get_all(http::header::CONTENT_TYPE),
        "content-length" => headers.get_all(http::header::CONTENT_LENGTH),
        "date" => headers.get_all(http::header::DATE),
        "host" => headers.get_all(http::header::HOST),
        _ => headers.get_all(name),
    }
    .iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        let v = first.as_bytes().trim_ascii();
        if !v.contains(&b'\n') {
            return Some(Cow::Borrowed(v));
        }
        let mut out = Vec::with_capacity(v.len());
        push_trimmed(&mut out, v);
        return Some(Cow::Owned(out));
    };
    let mut out = Vec::with_capacity(first.len() + second.len() + 2);
    push_trimmed(&mut out, first.as_bytes());
    for v in std::iter::once(second).chain(values) {
        out.extend_from_slice(b", ");
        push_trimmed(&mut out, v.as_bytes());
    }
    Some(Cow::Owned(out))
}

/// Appends a field line, trimmed, with any obsolete line folding replaced by one space.
fn push_trimmed(out: &mut Vec<u8>, v: &[u8]) {
    let v = v.trim_ascii();
    if !v.contains(&b'\n') {
        out.extend_from_slice(v);
        return;
    }
    let mut in_fold = false;
    for &b in v {
        if b == b'\r' || b == b'\n' {
            in_fold = true;
        } else if in_fold && (b == b' ' || b == b'\t') {
            continue;
        } else {
            if in_fold {
                // obs-fold: CRLF followed by whitespace becomes one space.
                while out.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                    out.pop();
                }
                out.push(b' ');
                in_fold = false;
            }
            out.push(b);
        }
    }
}

/// Fields known to be structured dictionaries or lists; others are tried as dictionary, list,
/// then item (the first that parses), which serialize the same for every unambiguous value.
fn reserialize_structured(name: &str, value: &[u8]) -> Result<String, SignatureErrorKind> {
    let bad = SignatureErrorKind::ComponentUnavailable;
    const DICTIONARIES: &[&str] = &[
        "content-digest",
        "repr-digest",
        "want-content-digest",
        "want-repr-digest",
        "signature",
        "signature-input",
        "accept-signature",
        "priority",
    ];
    if DICTIONARIES.contains(&name) {
        return sfv::Parser::parse_dictionary(value)
            .map_err(|_| bad)?
            .serialize_value()
            .map_err(|_| bad);
    }
    if let Ok(d) = sfv::Parser::parse_dictionary(value) {
        return d.serialize_value().map_err(|_| bad);
    }
    if let Ok(l) = sfv::Parser::parse_list(value) {
        return l.serialize_value().map_err(|_| bad);
    }
    sfv::Parser::parse_item(value)
        .map_err(|_| bad)?
        .serialize_value()
        .map_err(|_| bad)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode_form(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes with the `application/x-www-form-urlencoded` set, spaces as `%20`
/// (RFC 9421 §2.2.8).
fn encode_form(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::parse::parse_signature_input;

    fn request() -> (Method, Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert("date", "Tue, 20 Apr 2021 02:07:55 GMT".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert(
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
                .parse()
                .unwrap(),
        );
        h.insert("content-length", "18".parse().unwrap());
        (Method::POST, "/foo?param=Value&Pet=dog".parse().unwrap(), h)
    }

    fn base(
        input: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<String, SignatureErrorKind> {
        let parsed = parse_signature_input(input.as_bytes()).unwrap();
        let t = Target {
            method,
            uri,
            headers,
            default_scheme: "https",
        };
        let mut out = Vec::new();
        write_base(&t, &parsed[0].components, &parsed[0].params_line, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn rfc9421_b25_base() {
        let (m, u, h) = request();
        let b = base(
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            &m,
            &u,
            &h,
        )
        .unwrap();
        assert_eq!(
            b,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
        );
    }

    #[test]
    fn derived_components() {
        let (m, u, h) = request();
        let b = base(
            r#"s=("@method" "@target-uri" "@scheme" "@request-target" "@path" "@query" "@query-param";name="Pet" "content-digest";sf);created=1"#,
            &m,
            &u,
            &h,
        )
        .unwrap();
        let lines: Vec<_> = b.lines().collect();
        assert_eq!(lines[0], "\"@method\": POST");
        assert_eq!(
            lines[1],
            "\"@target-uri\": https://example.com/foo?param=Value&Pet=dog"
        );
        assert_eq!(lines[2], "\"@scheme\": https");
        assert_eq!(lines[3], "\"@request-target\": /foo?param=Value&Pet=dog");
        assert_eq!(lines[4], "\"@path\": /foo");
        assert_eq!(lines[5], "\"@query\": ?param=Value&Pet=dog");
        assert_eq!(lines[6], "\"@query-param\";name=\"Pet\": dog");
        assert!(lines[7].starts_with("\"content-digest\";sf: sha-512=:WZDP"));
    }

    #[test]
    fn rfc9421_query_param_encoding_examples() {
        // RFC 9421 §2.2.8.
        let (m, _, h) = request();
        let u: Uri = "/path?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something"
            .parse()
            .unwrap();
        let b = base(
            r#"s=("@query-param";name="var" "@query-param";name="bar" "@query-param";name="fa%C3%A7ade%22%3A%20")"#,
            &m,
            &u,
            &h,
        )
        .unwrap();
        let lines: Vec<_> = b.lines().collect();
        assert_eq!(
            lines[0],
            "\"@query-param\";name=\"var\": this%20is%20a%20big%0Amultiline%20value"
        );
        assert_eq!(
            lines[1],
            "\"@query-param\";name=\"bar\": with%20plus%20whitespace"
        );
        assert_eq!(
            lines[2],
            "\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\": something"
        );
    }

    #[test]
    fn multiple_field_lines_and_missing_ones() {
        let (m, u, mut h) = request();
        h.append("x-list", " a ".parse().unwrap());
        h.append("x-list", "b,  c".parse().unwrap());
        let b = base(r#"s=("x-list")"#, &m, &u, &h).unwrap();
        assert!(b.starts_with("\"x-list\": a, b,  c\n"));
        assert_eq!(
            base(r#"s=("x-absent")"#, &m, &u, &h).unwrap_err(),
            SignatureErrorKind::ComponentUnavailable
        );
        assert_eq!(
            base(r#"s=("@query-param";name="nope")"#, &m, &u, &h).unwrap_err(),
            SignatureErrorKind::ComponentUnavailable
        );
        h.insert("x-dict", "a=1,   b=(x  y);p".parse().unwrap());
        let b = base(r#"s=("x-dict";key="b" "x-dict";sf)"#, &m, &u, &h).unwrap();
        assert!(b.starts_with("\"x-dict\";key=\"b\": (x y);p\n\"x-dict\";sf: a=1, b=(x y);p\n"));
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(
            split_host_port("a.example:8080"),
            Some(("a.example", Some("8080")))
        );
        assert_eq!(split_host_port("[::1]:443"), Some(("[::1]", Some("443"))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("a b"), None);
        assert_eq!(split_host_port("a:"), None);
        assert_eq!(split_host_port("a:8x"), None);
        assert_eq!(split_host_port(""), None);
    }

    #[test]
    fn host_table_is_the_host_class() {
        for b in 0..=255u8 {
            assert_eq!(
                HOST_CHAR[usize::from(b)],
                b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=[]:".contains(&b)
            );
        }
    }

    #[test]
    fn authority_drops_default_ports_and_lowercases() {
        let (m, _, mut h) = request();
        h.insert("host", "Example.COM:443".parse().unwrap());
        let u: Uri = "/".parse().unwrap();
        let b = base(r#"s=("@authority" "@target-uri")"#, &m, &u, &h).unwrap();
        assert!(
            b.starts_with("\"@authority\": example.com\n\"@target-uri\": https://example.com/\n")
        );
        let u: Uri = "http://a.example:8080/x".parse().unwrap();
        let b = base(r#"s=("@authority" "@scheme")"#, &m, &u, &h).unwrap();
        assert!(b.starts_with("\"@authority\": a.example:8080\n\"@scheme\": http\n"));
    }
}
