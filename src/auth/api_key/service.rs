//! The service: finds the key, looks it up, checks expiry and scopes.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, Request, Response, header::AUTHORIZATION};
use http_body::Body;
use subtle::ConstantTimeEq;
use tower::Service;

use super::{
    future::ResponseFuture,
    key::{KeyHash, MAX_KEY_LEN, hash_key_bytes},
    layer::Shared,
    principal::{Principal, PrincipalId},
    rejection::{ApiKeyRejection, ApiKeyRejectionKind},
    store::ApiKeyStore,
};
use crate::{
    net,
    problem::{MakeRejection, Problem, ProblemType},
};

/// The service made by [`ApiKeyLayer`](super::ApiKeyLayer).
pub struct ApiKey<S, K, R> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) rejection: R,
}

impl<S, K, R, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKey<S, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    K: ApiKeyStore,
    R: MakeRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match admit(&self.shared, &self.rejection, &mut req) {
            None => ResponseFuture::inner(self.inner.call(req)),
            Some(res) => {
                let (parts, body) = req.into_parts();
                ResponseFuture::rejected(res, &parts, body)
            }
        }
    }
}

/// The request step of API-key authentication, shared by [`ApiKey`] and the stack's engine:
/// `None` when the key is good (its [`Principal`] is then in the request's extensions), else
/// the 401/403 (the caller answers it, after draining a small body still coming).
#[inline]
pub(crate) fn admit<K, R, B, ResBody>(
    shared: &Shared<K>,
    rejection: &R,
    req: &mut Request<B>,
) -> Option<Response<ResBody>>
where
    K: ApiKeyStore,
    R: MakeRejection<ResBody>,
{
    match authenticate(shared, req.headers()) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            None
        }
        Err(failure) => Some(reject(shared, rejection, req, failure)),
    }
}

/// Why authentication failed, with what may be logged about it.
struct Failure {
    kind: ApiKeyRejectionKind,
    /// A key was presented (so the challenge says `error="invalid_token"`).
    presented: bool,
    principal: Option<PrincipalId>,
    hash: Option<KeyHash>,
}

impl Failure {
    fn new(kind: ApiKeyRejectionKind, presented: bool) -> Self {
        Self {
            kind,
            presented,
            principal: None,
            hash: None,
        }
    }
}

/// Where the key was found, if anywhere.
enum Presented<'a> {
    Missing,
    /// Another `Authorization` scheme: no key was presented in a form we read.
    OtherScheme,
    /// A key-bearing header that cannot hold a key (empty, too long, repeated, bad bytes).
    Malformed,
    Key(&'a [u8]),
}

fn authenticate<K: ApiKeyStore>(
    shared: &Shared<K>,
    headers: &HeaderMap,
) -> Result<Principal, Failure> {
    let key = match find_key(shared, headers) {
        Presented::Key(key) => key,
        Presented::Missing => return Err(Failure::new(ApiKeyRejectionKind::Missing, false)),
        Presented::OtherScheme => return Err(Failure::new(ApiKeyRejectionKind::Malformed, false)),
        Presented::Malformed => return Err(Failure::new(ApiKeyRejectionKind::Malformed, true)),
    };
    let hash = hash_key_bytes(key);
    let entry = shared
        .store
        .lookup(&hash)
        // Constant-time with respect to the stored hash, whatever index the store used.
        .filter(|entry| bool::from(entry.hash().ct_eq(&hash)));
    let Some(entry) = entry else {
        return Err(Failure {
            hash: Some(hash),
            ..Failure::new(ApiKeyRejectionKind::Unknown, true)
        });
    };
    let principal = entry.principal();
    if let Some(expiry) = entry.effective_expiry()
        && shared.clock.now() > expiry
    {
        return Err(Failure {
            principal: Some(principal.id().clone()),
            hash: Some(hash),
            ..Failure::new(ApiKeyRejectionKind::Expired, true)
        });
    }
    if !shared
        .required_scopes
        .iter()
        .all(|scope| principal.has_scope(scope))
    {
        return Err(Failure {
            principal: Some(principal.id().clone()),
            hash: Some(hash),
            ..Failure::new(ApiKeyRejectionKind::InsufficientScope, true)
        });
    }
    Ok(entry.into_principal())
}

fn find_key<'h, K>(shared: &Shared<K>, headers: &'h HeaderMap) -> Presented<'h> {
    if let Some(name) = &shared.header
        && let Some(found) = from_header(headers, name)
    {
        return found;
    }
    if shared.bearer
        && let Some(found) = from_authorization(headers)
    {
        return found;
    }
    Presented::Missing
}

/// The only value of `name`, if the header is there.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Result<&'h [u8], ()>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(Ok(first.as_bytes()))
}

fn from_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Presented<'h>> {
    Some(match single(headers, name)? {
        Ok(value) => checked_key(value.trim_ascii()),
        Err(()) => Presented::Malformed,
    })
}

fn from_authorization(headers: &HeaderMap) -> Option<Presented<'_>> {
    let value = match single(headers, &AUTHORIZATION)? {
        Ok(value) => value.trim_ascii(),
        Err(()) => return Some(Presented::Malformed),
    };
    // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ], and the
    // scheme is case-insensitive.
    // Only the first bytes can hold the scheme: a huge value is never scanned.
    let (scheme, rest) = match value.iter().take(16).position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(Presented::OtherScheme);
    }
    Some(checked_key(rest.trim_ascii_start()))
}

/// A key is 1 to [`MAX_KEY_LEN`] visible ASCII characters. The length is checked first, so a
/// huge header is refused without being scanned or hashed.
fn checked_key(key: &[u8]) -> Presented<'_> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.iter().all(u8::is_ascii_graphic) {
        return Presented::Malformed;
    }
    Presented::Key(key)
}

fn reject<K, R, B, ResBody>(
    shared: &Shared<K>,
    rejection: &R,
    req: &Request<B>,
    failure: Failure,
) -> Response<ResBody>
where
    R: MakeRejection<ResBody>,
{
    audit(shared, req, &failure);
    let (problem_type, challenge, detail) = match failure.kind {
        ApiKeyRejectionKind::InsufficientScope => (
            ProblemType::FORBIDDEN,
            &shared.challenge_scope,
            "The API key is not allowed to use this resource.",
        ),
        _ if failure.presented => (
            ProblemType::UNAUTHORIZED,
            &shared.challenge_invalid,
            "A valid API key is required.",
        ),
        _ => (
            ProblemType::UNAUTHORIZED,
            &shared.challenge,
            "A valid API key is required.",
        ),
    };
    let problem = Problem::new(problem_type)
        .with_detail(detail)
        .with_request_id_from(req.extensions())
        .for_request(req.headers())
        .with_header(http::header::WWW_AUTHENTICATE, challenge.clone());
    let mut res = crate::problem::refuse(rejection, problem);
    res.extensions_mut()
        .insert(ApiKeyRejection::new(failure.kind, failure.principal));
    res
}

/// The audit event of a failed attempt: never the key, at most 8 hex digits of its hash.
fn audit<K, B>(shared: &Shared<K>, req: &Request<B>, failure: &Failure) {
    let peer = net::peer_addr(req.extensions()).map(|a| a.ip());
    let client = net::resolve(req.headers(), peer, &shared.trusted_proxies).client_ip;
    let request_id = req
        .extensions()
        .get::<crate::request_id::RequestId>()
        .map(|id| id.as_str());
    let key_hash = failure.hash.as_ref().map(KeyHash::short);
    tracing::warn!(
        target: "battlement::auth::api_key",
        reason = failure.kind.as_str(),
        principal = failure.principal.as_ref().map(PrincipalId::as_str),
        key_hash = key_hash.as_deref(),
        client = client.as_ref().map(tracing::field::display),
        request_id,
        method = %req.method(),
        path = req.uri().path(),
        "API key authentication failed"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "battlement_api_key_rejections_total",
        "reason" => failure.kind.as_str()
    )
    .increment(1);
}

impl<S: Clone, K, R: Clone> Clone for ApiKey<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, K, R> fmt::Debug for ApiKey<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("inner", &self.inner)
            .field("config", &self.shared)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::ApiKeyLayer;
    use crate::auth::api_key::store::ApiKeys;
    use http::HeaderValue;

    fn shared(header: Option<&str>, bearer: bool) -> Arc<Shared<ApiKeys>> {
        let mut layer = ApiKeyLayer::new(ApiKeys::default()).accept_bearer(bearer);
        if let Some(h) = header {
            layer = layer.header(h).unwrap();
        }
        layer.shared
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn found(s: &Shared<ApiKeys>, pairs: &[(&str, &[u8])]) -> Result<Vec<u8>, &'static str> {
        match find_key(s, &headers(pairs)) {
            Presented::Key(k) => Ok(k.to_vec()),
            Presented::Missing => Err("missing"),
            Presented::OtherScheme => Err("other"),
            Presented::Malformed => Err("malformed"),
        }
    }

    #[test]
    fn bearer_parsing() {
        let s = shared(None, true);
        assert_eq!(
            found(&s, &[("authorization", b"Bearer abc")]),
            Ok(b"abc".to_vec())
        );
        assert_eq!(
            found(&s, &[("authorization", b"bEaReR   abc ")]),
            Ok(b"abc".to_vec())
        );
        assert_eq!(found(&s, &[]), Err("missing"));
        assert_eq!(found(&s, &[("authorization", b"Bearer")]), Err("malformed"));
        assert_eq!(
            found(&s, &[("authorization", b"Bearer ")]),
            Err("malformed")
        );
        assert_eq!(
            found(&s, &[("authorization", b"Bearer a b")]),
            Err("malformed")
        );
        assert_eq!(
            found(&s, &[("authorization", b"Bearer a\xffb")]),
            Err("malformed")
        );
        assert_eq!(
            found(&s, &[("authorization", b"Basic dXNlcjpwYXNz")]),
            Err("other")
        );
        assert_eq!(found(&s, &[("authorization", b"Bearerabc")]), Err("other"));
        let long = format!("Bearer {}", "a".repeat(MAX_KEY_LEN + 1));
        assert_eq!(
            found(&s, &[("authorization", long.as_bytes())]),
            Err("malformed")
        );
        let max = format!("Bearer {}", "a".repeat(MAX_KEY_LEN));
        assert!(found(&s, &[("authorization", max.as_bytes())]).is_ok());
        assert_eq!(
            found(
                &s,
                &[
                    ("authorization", b"Bearer a"),
                    ("authorization", b"Bearer a")
                ]
            ),
            Err("malformed")
        );
        // A custom header is not read unless configured.
        assert_eq!(found(&s, &[("x-api-key", b"abc")]), Err("missing"));
    }

    #[test]
    fn custom_header() {
        let s = shared(Some("x-api-key"), true);
        assert_eq!(found(&s, &[("x-api-key", b"abc")]), Ok(b"abc".to_vec()));
        assert_eq!(
            found(
                &s,
                &[("x-api-key", b"abc"), ("authorization", b"Bearer def")]
            ),
            Ok(b"abc".to_vec())
        );
        assert_eq!(
            found(&s, &[("authorization", b"Bearer def")]),
            Ok(b"def".to_vec())
        );
        assert_eq!(found(&s, &[("x-api-key", b"")]), Err("malformed"));
        let s = shared(Some("x-api-key"), false);
        assert_eq!(
            found(&s, &[("authorization", b"Bearer def")]),
            Err("missing")
        );
    }

    #[test]
    fn layer_config_is_validated() {
        let layer = ApiKeyLayer::new(ApiKeys::default());
        assert!(layer.clone().header("authorization").is_err());
        assert!(layer.clone().header("bad header").is_err());
        assert!(layer.clone().realm("").is_err());
        assert!(layer.clone().realm("a\"b").is_err());
        assert!(layer.clone().realm("a\nb").is_err());
        let l = layer.clone().realm("my api").unwrap();
        assert_eq!(l.shared.challenge, r#"Bearer realm="my api""#);
        let l = l.require_scopes(["a", "b"]).unwrap();
        assert_eq!(
            l.shared.challenge_scope,
            r#"Bearer realm="my api", error="insufficient_scope", scope="a b""#
        );
        assert_eq!(
            layer.require_scopes(["ok", "no\"pe"]).unwrap_err().field(),
            "require.scopes[1]"
        );
    }

    #[tokio::test]
    async fn rejection_carries_the_request_id_and_the_cause() {
        use bytes::Bytes;
        use tower::{Layer, ServiceExt};

        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let inner = tower::service_fn(move |_req: Request<http_body_util::Empty<Bytes>>| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(Bytes::from_static(b"ok"))) }
        });
        let svc = ApiKeyLayer::new(ApiKeys::default()).layer(inner);
        let mut req = Request::new(http_body_util::Empty::new());
        req.extensions_mut()
            .insert(crate::request_id::RequestId::from_validated(
                HeaderValue::from_static("req-42"),
            ));
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer unknown-key"),
        );
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.extensions().get::<ApiKeyRejection>().unwrap().kind(),
            ApiKeyRejectionKind::Unknown
        );
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["request_id"], "req-42");
        assert_eq!(v["detail"], "A valid API key is required.");
        assert!(!String::from_utf8_lossy(res.body()).contains("unknown-key"));
        // The inner service never saw the request.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    proptest::proptest! {
        #[test]
        fn any_header_bytes_are_handled(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            custom in proptest::bool::ANY,
        ) {
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let s = shared(Some("x-api-key"), true);
            let mut h = HeaderMap::new();
            h.insert(if custom { HeaderName::from_static("x-api-key") } else { AUTHORIZATION }, value);
            if let Presented::Key(k) = find_key(&s, &h) {
                proptest::prop_assert!(!k.is_empty() && k.len() <= MAX_KEY_LEN);
                proptest::prop_assert!(k.iter().all(u8::is_ascii_graphic));
            }
        }
    }
}
