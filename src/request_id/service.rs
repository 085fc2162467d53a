use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tower::Service;

use crate::net::peer_addr;

use super::{
    MakeRequestId, RequestId, ResponseFuture, ValidateRequestId,
    id::is_well_formed,
    layer::{Config, Trust},
    traceparent,
};

/// The service of [`SetRequestIdLayer`](super::SetRequestIdLayer).
pub struct SetRequestId<S, M = super::DefaultMakeRequestId, V = super::DefaultValidateRequestId> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<M, V>>,
}

impl<M, V> Config<M, V>
where
    M: MakeRequestId,
    V: ValidateRequestId,
{
    /// The id of `req`: an acceptable incoming one, or a `traceparent` trace id, or a new one.
    /// The request's id header is left holding exactly that id.
    pub(crate) fn resolve<B>(&self, req: &mut Request<B>) -> RequestId {
        let trusted = match &self.trust {
            Trust::Anyone => true,
            Trust::Nobody => false,
            Trust::Proxies(proxies) => {
                !proxies.is_empty()
                    && peer_addr(req.extensions()).is_some_and(|peer| proxies.contains(peer.ip()))
            }
        };
        let mut values = req.headers().get_all(&self.header).iter();
        // Why an incoming id was not kept, and its length (never the value itself: it came
        // from outside and may forge a log line).
        let mut refused = None;
        if let Some(first) = values.next() {
            if !trusted {
                refused = Some(("the peer is not a trusted proxy", first.len()));
            } else if values.next().is_some() {
                refused = Some(("the header was sent more than once", first.len()));
            } else if let Some(id) = self.accept(first) {
                return id;
            } else {
                refused = Some(("refused by the validator", first.len()));
            }
        }
        let id = if trusted && self.traceparent {
            traceparent::from_headers(req.headers())
        } else {
            None
        };
        let id = id.unwrap_or_else(|| self.make.make_request_id(req));
        if let Some((reason, len)) = refused {
            tracing::debug!(
                header = %self.header,
                len,
                reason,
                request_id = %id,
                "rejected an incoming request id"
            );
        }
        req.headers_mut()
            .insert(self.header.clone(), id.header_value().clone());
        id
    }

    fn accept(&self, value: &HeaderValue) -> Option<RequestId> {
        let bytes = value.as_bytes();
        if !is_well_formed(bytes) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        self.validate
            .is_valid(text)
            .then(|| RequestId::from_validated(value.clone()))
    }
}

impl<S, M, V, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S, M, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: MakeRequestId,
    V: ValidateRequestId,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = self.config.resolve(&mut req);
        req.extensions_mut().insert(id.clone());
        let span = request_span(&id);
        let entered = span.enter();
        let future = self.inner.call(req);
        drop(entered);
        ResponseFuture::new(future, id, span, self.config.header.clone())
    }
}

/// The request's span, with its id: only for a tracing subscriber at INFO (without one,
/// `info_span!` would still format the fields for the `log` crate when tracing's `log` feature
/// is on).
#[inline]
pub(crate) fn request_span(id: &RequestId) -> tracing::Span {
    if tracing::Level::INFO <= tracing::level_filters::LevelFilter::current() {
        tracing::info_span!("request", request_id = %id)
    } else {
        tracing::Span::none()
    }
}

impl<S: Clone, M, V> Clone for SetRequestId<S, M, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, M, V> fmt::Debug for SetRequestId<S, M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetRequestId")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
