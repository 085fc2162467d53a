//! The layer and its precomputed plan.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY, Entry},
};
use tower::Layer;

use super::{
    CspNonce, SecurityHeaders, SetSecurityHeaders,
    csp::{API_POLICY, WEB_POLICY},
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
    plan: Arc<Plan>,
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

/// One header to add.
#[derive(Debug)]
struct Fixed {
    name: HeaderName,
    value: HeaderValue,
    overriding: bool,
}

impl Fixed {
    #[inline]
    fn apply(&self, headers: &mut HeaderMap) {
        if self.overriding {
            headers.insert(self.name.clone(), self.value.clone());
        } else if let Entry::Vacant(slot) = headers.entry(&self.name) {
            slot.insert(self.value.clone());
        }
    }
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
            headers.insert(self.name.clone(), value);
        }
    }
}

/// Everything the service needs, computed once per layer.
#[derive(Debug)]
pub(crate) struct Plan {
    remove: Box<[HeaderName]>,
    fixed: Box<[Fixed]>,
    nonce_csp: Box<[NonceCsp]>,
    hsts: Option<Fixed>,
    hsts_always: bool,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) nonce: bool,
    capacity: usize,
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
                let len =
                    segments.iter().map(String::len).sum::<usize>() + (segments.len() - 1) * 24;
                nonce_csp.push(NonceCsp {
                    name,
                    segments: segments.into_iter().map(Bytes::from).collect(),
                    len,
                    overriding,
                });
            }
        }
        let hsts = set.hsts.map(|value| Fixed {
            overriding: overriding(&http::header::STRICT_TRANSPORT_SECURITY),
            name: http::header::STRICT_TRANSPORT_SECURITY,
            value,
        });
        let capacity = fixed.len() + nonce_csp.len() + usize::from(hsts.is_some());
        Self {
            remove: set.remove.into(),
            nonce: !nonce_csp.is_empty(),
            fixed: fixed.into(),
            nonce_csp: nonce_csp.into(),
            hsts,
            hsts_always: set.hsts_always,
            trusted_proxies: set.trusted_proxies,
            capacity,
        }
    }

    /// Whether HSTS could be sent at all, so the service knows if it must find the scheme.
    #[inline]
    pub(crate) fn needs_scheme(&self) -> bool {
        self.hsts.is_some() && !self.hsts_always
    }

    #[inline]
    pub(crate) fn apply(&self, headers: &mut HeaderMap, https: bool, nonce: Option<&CspNonce>) {
        for name in self.remove.iter() {
            headers.remove(name);
        }
        // At most 32768 entries fit a HeaderMap; past that, inserts below fail the same way.
        let _ = headers.try_reserve(self.capacity);
        for header in self.fixed.iter() {
            header.apply(headers);
        }
        if let Some(hsts) = &self.hsts
            && (https || self.hsts_always)
        {
            hsts.apply(headers);
        }
        if let Some(nonce) = nonce {
            for csp in self.nonce_csp.iter() {
                csp.apply(headers, nonce);
            }
        }
    }
}
