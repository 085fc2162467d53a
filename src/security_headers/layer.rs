//! The layer and its precomputed plan.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY, Entry, OccupiedEntry},
};
use tower::Layer;

use super::{
    CspNonce, SecurityHeaders, SetSecurityHeaders,
    csp::{API_POLICY, WEB_POLICY},
    nonce::NONCE_LEN,
};
use crate::net::TrustedProxies;

/// Applies a [`SecurityHeaders`] set to every response, computed once.
///
/// ```
/// use battlement::security_headers::{SecurityHeaders, SecurityHeadersLayer};
///
/// let layer = SecurityHeadersLayer::web(); // helmet 8 parity
/// let layer = SecurityHeadersLayer::new(SecurityHeaders::api().remove_server_header());
/// ```
#[derive(Clone)]
pub struct SecurityHeadersLayer {
    pub(crate) plan: Arc<Plan>,
}

impl SecurityHeadersLayer {
    /// Precomputes `headers` into a layer.
    pub fn new(headers: SecurityHeaders) -> Self {
        Self {
            plan: Arc::new(Plan::new(headers)),
        }
    }

    /// [`SecurityHeaders::web`]: helmet 8's defaults.
    pub fn web() -> Self {
        Self::new(SecurityHeaders::web())
    }

    /// [`SecurityHeaders::api`]: for JSON APIs.
    pub fn api() -> Self {
        Self::new(SecurityHeaders::api())
    }
}

impl Default for SecurityHeadersLayer {
    /// [`SecurityHeadersLayer::web`].
    fn default() -> Self {
        Self::web()
    }
}

impl fmt::Debug for SecurityHeadersLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityHeadersLayer")
            .field("plan", &self.plan)
            .finish()
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SetSecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetSecurityHeaders::from_plan(inner, self.plan.clone())
    }
}

/// One header of the set, before it goes into a template.
struct Fixed {
    name: HeaderName,
    value: HeaderValue,
    overriding: bool,
}

/// A CSP header with a per-request nonce: `segments.join(nonce)`.
#[derive(Debug)]
struct NonceCsp {
    name: HeaderName,
    segments: Box<[Bytes]>,
    len: usize,
    overriding: bool,
}

impl NonceCsp {
    fn apply(&self, headers: &mut HeaderMap, nonce: &CspNonce) {
        if !self.overriding && headers.contains_key(&self.name) {
            return;
        }
        let mut buf = Vec::with_capacity(self.len);
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(nonce.as_bytes());
            }
            buf.extend_from_slice(seg);
        }
        // Validated policy text and base64: always a valid header value.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(buf)) {
            let _ = headers.try_insert(self.name.clone(), value);
        }
    }
}

/// Everything the service needs, computed once per layer.
///
/// The headers are kept as two ready-made [`HeaderMap`]s (without and with HSTS). Cloning one
/// is a memcpy of its index table plus a cheap clone of each (static or shared) name and
/// value, several times cheaper than hashing a dozen inserts into the response's map; the
/// handler's own headers (usually one or two) are then inserted into the clone.
/// Free slots kept in each template for the headers added after it.
const ROOM: usize = 16;

#[derive(Debug)]
pub(crate) struct Plan {
    remove: Box<[HeaderName]>,
    /// Headers of the templates whose value wins over the handler's.
    overriding: Box<[HeaderName]>,
    /// `[plain, https]`: the second one has HSTS.
    templates: [HeaderMap; 2],
    nonce_csp: Box<[NonceCsp]>,
    has_hsts: bool,
    hsts_always: bool,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) nonce: bool,
}

impl Plan {
    fn new(set: SecurityHeaders) -> Self {
        let overriding = |name: &HeaderName| {
            set.modes
                .iter()
                .find(|(n, _)| n == name)
                .map_or(set.override_all, |(_, o)| *o)
        };
        let mut fixed: Vec<Fixed> = set
            .headers
            .iter()
            .map(|(name, value)| Fixed {
                name: name.clone(),
                value: value.clone(),
                overriding: overriding(name),
            })
            .collect();
        let mut nonce_csp = Vec::new();
        let policies = [
            (CONTENT_SECURITY_POLICY, &set.csp),
            (CONTENT_SECURITY_POLICY_REPORT_ONLY, &set.csp_report_only),
        ];
        for (name, csp) in policies {
            let Some(csp) = csp else { continue };
            let segments = csp.segments();
            let overriding = overriding(&name);
            if let [policy] = segments.as_slice() {
                let value = match policy.as_str() {
                    WEB_POLICY => HeaderValue::from_static(WEB_POLICY),
                    API_POLICY => HeaderValue::from_static(API_POLICY),
                    // The builder only admits visible ASCII and spaces: never fails.
                    other => match HeaderValue::from_str(other) {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                };
                fixed.push(Fixed {
                    name,
                    value,
                    overriding,
                });
            } else {
                let len = segments.iter().map(String::len).sum::<usize>()
                    + (segments.len() - 1) * NONCE_LEN;
                nonce_csp.push(NonceCsp {
                    name,
                    segments: segments.into_iter().map(Bytes::from).collect(),
                    len,
                    overriding,
                });
            }
        }
        // Room for what the handler and the other layers add (content type and length, the
        // request id, rate-limit headers, ...): each response is a clone of this map, and a
        // clone keeps its index table, so these do not rehash it per response.
        let mut plain = HeaderMap::with_capacity(fixed.len() + 1 + ROOM);
        for header in &fixed {
            plain.insert(header.name.clone(), header.value.clone());
        }
        let mut https = plain.clone();
        let mut overriding_names: Vec<HeaderName> = fixed
            .iter()
            .filter(|h| h.overriding)
            .map(|h| h.name.clone())
            .collect();
        let has_hsts = set.hsts.is_some();
        if let Some(value) = set.hsts {
            let name = http::header::STRICT_TRANSPORT_SECURITY;
            if overriding(&name) {
                overriding_names.push(name.clone());
            }
            https.insert(name, value);
        }
        overriding_names.extend(
            nonce_csp
                .iter()
                .filter(|c| c.overriding)
                .map(|c| c.name.clone()),
        );
        Self {
            remove: set.remove.into(),
            overriding: overriding_names.into(),
            templates: [plain, https],
            nonce: !nonce_csp.is_empty(),
            nonce_csp: nonce_csp.into(),
            has_hsts,
            hsts_always: set.hsts_always,
            trusted_proxies: set.trusted_proxies,
        }
    }

    /// Whether HSTS could be sent at all, so the service knows if it must find the scheme.
    #[inline]
    pub(crate) fn needs_scheme(&self) -> bool {
        self.has_hsts && !self.hsts_always
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap, https: bool, nonce: Option<&CspNonce>) {
        let template = &self.templates[usize::from(https || self.hsts_always)];
        let handler = std::mem::replace(headers, template.clone());
        if !handler.is_empty() {
            self.merge(headers, handler);
        }
        if let Some(nonce) = nonce {
            for csp in self.nonce_csp.iter() {
                csp.apply(headers, nonce);
            }
        }
    }

    /// Puts the handler's headers back over the template: the handler's value of a header
    /// wins unless that header is overriding; removed headers are dropped.
    fn merge(&self, headers: &mut HeaderMap, handler: HeaderMap) {
        let mut current: Option<OccupiedEntry<'_, HeaderValue>> = None;
        for (name, value) in handler {
            match (name, &mut current) {
                (Some(name), _) => {
                    current = None;
                    let dropped = self.remove.contains(&name)
                        || (self.overriding.contains(&name) && headers.contains_key(&name));
                    if dropped {
                        continue;
                    }
                    // `try_*`: a handler map at the 32768-name limit loses headers, no panic.
                    current = match headers.try_entry(name) {
                        Ok(Entry::Occupied(mut entry)) => {
                            entry.insert(value);
                            Some(entry)
                        }
                        Ok(Entry::Vacant(entry)) => entry.try_insert_entry(value).ok(),
                        Err(_) => None,
                    };
                }
                // Another value of the same name (or of a dropped one, when `current` is None).
                (None, Some(entry)) => entry.append(value),
                (None, None) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_TYPE, SET_COOKIE, X_FRAME_OPTIONS};

    use super::*;
    use crate::security_headers::X_POWERED_BY;

    fn handler_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        h.append(X_POWERED_BY, HeaderValue::from_static("PHP"));
        h.append(X_POWERED_BY, HeaderValue::from_static("again"));
        h.append(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.append(X_FRAME_OPTIONS, HeaderValue::from_static("ALLOW-FROM x"));
        h.append(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        h
    }

    fn all(h: &HeaderMap, name: HeaderName) -> Vec<&str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn merge_keeps_handler_values_and_multi_values() {
        let plan = Plan::new(SecurityHeaders::web());
        let mut h = handler_headers();
        plan.apply(&mut h, false, None);
        assert_eq!(all(&h, SET_COOKIE), ["a=1", "b=2"]);
        assert_eq!(all(&h, X_FRAME_OPTIONS), ["DENY", "ALLOW-FROM x"]);
        assert_eq!(all(&h, CONTENT_TYPE), ["text/html"]);
        assert!(all(&h, X_POWERED_BY).is_empty());
        assert_eq!(h.len(), 2 + 2 + 1 + 10);

        let plan = Plan::new(SecurityHeaders::web().overriding(X_FRAME_OPTIONS));
        let mut h = handler_headers();
        plan.apply(&mut h, true, None);
        assert_eq!(all(&h, X_FRAME_OPTIONS), ["SAMEORIGIN"]);
        assert_eq!(all(&h, SET_COOKIE), ["a=1", "b=2"]);
        assert!(h.contains_key(http::header::STRICT_TRANSPORT_SECURITY));
    }

    #[test]
    fn overriding_hsts_over_http_keeps_handler_value() {
        let plan = Plan::new(SecurityHeaders::web().override_existing());
        let mut h = HeaderMap::new();
        h.insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=1"),
        );
        plan.apply(&mut h, false, None);
        assert_eq!(
            all(&h, http::header::STRICT_TRANSPORT_SECURITY),
            ["max-age=1"]
        );
        let mut h2 = HeaderMap::new();
        h2.insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=1"),
        );
        plan.apply(&mut h2, true, None);
        assert_eq!(
            all(&h2, http::header::STRICT_TRANSPORT_SECURITY),
            ["max-age=31536000; includeSubDomains"]
        );
    }
}
