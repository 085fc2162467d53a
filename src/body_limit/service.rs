use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, Response, header::CONTENT_LENGTH};
use http_body::Body;
use tower::Service;

use super::{
    BodyLimitLayer, PayloadTooLarge, RequestBody, ResponseFuture,
    body::{Handle, Shared},
    future::{Origin, Watch},
};
use crate::{
    drain,
    problem::{DefaultRejection, MakeRejection},
    request_id::RequestId,
};

/// The service of [`BodyLimitLayer`]. See the [module docs](super).
pub struct BodyLimit<S, R = DefaultRejection> {
    pub(crate) inner: S,
    pub(crate) limit: u64,
    pub(crate) ceiling: u64,
    pub(crate) rejection: R,
}

impl<S> BodyLimit<S> {
    /// Wraps `inner` with a limit of `limit` bytes.
    pub const fn new(inner: S, limit: u64) -> Self {
        Self {
            inner,
            limit,
            ceiling: limit,
            rejection: DefaultRejection,
        }
    }

    /// A [`BodyLimitLayer`] with a limit of `limit` bytes.
    pub const fn layer(limit: u64) -> BodyLimitLayer {
        BodyLimitLayer::new(limit)
    }
}

impl<S, R> BodyLimit<S, R> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, R: Clone> Clone for BodyLimit<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit,
            ceiling: self.ceiling,
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for BodyLimit<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyLimit")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("max_route_limit", &self.ceiling)
            .field("rejection", &std::any::type_name::<R>())
            .finish()
    }
}

/// The declared length: a single valid `Content-Length`, else the body's exact size hint.
/// Several or malformed `Content-Length` values count as unknown (the streaming rules apply).
#[inline]
fn declared_length<B: Body>(headers: &HeaderMap, body: &B) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => parse_content_length(value.as_bytes()),
        (Some(_), Some(_)) => None,
        (None, _) => body.size_hint().exact(),
    }
}

fn parse_content_length(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S, R>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    R: MakeRejection<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The common case inlines into the caller and calls the inner service at once (no
        // move of the request through an `Admitted`); every other case is out of line.
        let admitted = match common_case(self.limit, &req) {
            Ok(len) => {
                let limit = self.limit;
                let req = req.map(|body| RequestBody::fixed(body, limit, len));
                return ResponseFuture::inner(self.inner.call(req), None);
            }
            Err((declared, outer)) => admit_other(
                self.limit,
                self.ceiling,
                &self.rejection,
                req,
                declared,
                outer,
                true,
            ),
        };
        match admitted {
            Admitted::Pass(req, watch) => ResponseFuture::inner(self.inner.call(req), watch),
            Admitted::Reject(cause, request_id, body) => {
                ResponseFuture::reject(self.rejection.clone(), cause, request_id, body)
            }
        }
    }
}

/// What the body limit makes of a request: the request with its body limited (and, when the
/// body may cross the limit while the inner service runs, what watches it), or a refusal.
pub(crate) enum Admitted<B, R> {
    Pass(Request<RequestBody<B>>, Option<Watch<R>>),
    /// The body comes back so that a small one can be read before the 413 (`crate::drain`;
    /// `None` when the client waits for `100 Continue`).
    Reject(PayloadTooLarge, Origin, Option<B>),
}

/// What the other cases need: the declared length, an outer layer's shared cell.
type Other = (Option<u64>, Option<Arc<Shared>>);

/// The common case, a body already over (no body, or an empty one) within the limit and no
/// outer `BodyLimitLayer`: `Ok` with its length. Nothing can cross the limit nor keep anyone
/// waiting for the client, so nothing needs to be shared (no allocation). Otherwise the
/// declared length and the outer layer's handle (looked up once, here; cloned only when
/// present).
#[inline]
fn common_case<B: Body>(limit: u64, req: &Request<B>) -> Result<u64, Other> {
    let declared = declared_length(req.headers(), req.body());
    let outer = req.extensions().get::<Handle>().map(|h| h.0.clone());
    if outer.is_none()
        && let Some(len) = declared
        && len <= limit
        && req.body().is_end_stream()
        && req.body().size_hint().lower() <= limit
    {
        return Ok(len);
    }
    Err((declared, outer))
}

/// The body limit of [`BodyLimit`] (`limit`, within `ceiling`) applied to `req`, for a caller
/// that watches the body itself (the returned [`Watch`]): the request's extensions get the
/// body's [`Handle`] only when an inner layer may raise the limit.
#[inline]
pub(crate) fn admit<B: Body, R: Clone>(
    limit: u64,
    ceiling: u64,
    rejection: &R,
    req: Request<B>,
) -> Admitted<B, R> {
    match common_case(limit, &req) {
        Ok(len) => Admitted::Pass(req.map(|body| RequestBody::fixed(body, limit, len)), None),
        Err((declared, outer)) => {
            admit_other(limit, ceiling, rejection, req, declared, outer, false)
        }
    }
}

/// Every case but a body already over within the limit: an outer layer's handle, a body known
/// to be too large, a body still to come. With `publish`, the body's [`Handle`] goes into the
/// request's extensions, where an inner [`BodyLimitLayer`] and an inner
/// [`RequestTimeoutLayer`](crate::stack::RequestTimeoutLayer) find it.
#[inline(never)]
fn admit_other<B: Body, R: Clone>(
    limit: u64,
    ceiling: u64,
    rejection: &R,
    req: Request<B>,
    declared: Option<u64>,
    outer: Option<Arc<Shared>>,
    publish: bool,
) -> Admitted<B, R> {
    let refuse = |req: Request<B>, limit| {
        let (parts, body) = req.into_parts();
        Admitted::Reject(
            PayloadTooLarge {
                limit,
                content_length: declared,
            },
            Origin {
                request_id: parts.extensions.get::<RequestId>().cloned(),
                grpc: crate::grpc::is_grpc(&parts.headers),
            },
            drain::read_first(&parts.headers, body),
        )
    };
    // The body itself may prove it is too large (a size hint above the limit).
    let at_least = declared.unwrap_or(0).max(req.body().size_hint().lower());

    // An outer `BodyLimitLayer` already wraps this body: override its limit (within its
    // ceiling) and let it enforce; refuse here what is already known to be too large.
    if let Some(shared) = outer {
        let limit = shared.set_limit(limit);
        if at_least > limit {
            return refuse(req, limit);
        }
        return Admitted::Pass(req.map(RequestBody::unlimited), None);
    }

    if at_least > ceiling {
        return refuse(req, limit);
    }
    // A body still to come (of a known length within the limit, of an unknown length:
    // chunked, HTTP/2 without `content-length`), or a length that only an inner layer may
    // accept: the limit lives in a cell that an inner layer can change and through which the
    // body reports crossing it, and waiting for the client (for the request timeout's 408).
    let (mut parts, body) = req.into_parts();
    let mut shared = Shared::new(limit, ceiling);
    shared.declared = declared;
    shared.request_id = parts.extensions.get::<RequestId>().cloned();
    shared.grpc = crate::grpc::is_grpc(&parts.headers);
    let shared = Arc::new(shared);
    // Without a ceiling above the limit an inner body limit can only lower the limit, which
    // it does through the handle or by wrapping the body again (the same outcome).
    if publish || ceiling > limit {
        parts.extensions.insert(Handle(shared.clone()));
    }
    let watch = Watch {
        shared: shared.clone(),
        rejection: rejection.clone(),
    };
    let body = RequestBody::shared(body, shared, declared.unwrap_or(u64::MAX));
    Admitted::Pass(Request::from_parts(parts, body), Some(watch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_parsing_is_strict() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"1048576"), Some(1_048_576));
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"+5"), None);
        assert_eq!(parse_content_length(b" 5"), None);
        assert_eq!(parse_content_length(b"5,5"), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn several_content_lengths_are_unknown() {
        let mut headers = HeaderMap::new();
        headers.append(CONTENT_LENGTH, "5".parse().unwrap());
        headers.append(CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(
            declared_length(&headers, &http_body_util::Empty::<bytes::Bytes>::new()),
            None
        );
        let headers = HeaderMap::new();
        let full = http_body_util::Full::new(bytes::Bytes::from_static(b"abc"));
        assert_eq!(declared_length(&headers, &full), Some(3));
    }
}
