use std::task::{Context, Poll};

use http::{HeaderName, Request};
use tower::{Layer, Service};

use super::{RequestId, X_REQUEST_ID};

/// Client side: puts the current request id on outgoing requests that have none.
///
/// For each outgoing request without the id header, the id is taken from, in this order:
/// 1. a [`RequestId`] in the outgoing request's own extensions (set it yourself to forward a
///    particular id);
/// 2. [`RequestId::current`]: the id of the server request whose handler is making this call
///    (set by [`SetRequestIdLayer`](super::SetRequestIdLayer) for the handler's task).
///
/// An id header already on the request is left alone. With neither source, the request goes
/// out without an id.
#[derive(Clone, Debug)]
pub struct ForwardRequestIdLayer {
    header: HeaderName,
}

impl ForwardRequestIdLayer {
    /// Forwards in `x-request-id`.
    pub const fn new() -> Self {
        Self {
            header: X_REQUEST_ID,
        }
    }

    /// Forwards in `header` instead.
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Like [`header`](Self::header), from configuration text.
    ///
    /// # Errors
    ///
    /// As [`SetRequestIdLayer::try_header`](super::SetRequestIdLayer::try_header).
    pub fn try_header(self, name: &str) -> Result<Self, crate::ConfigError> {
        Ok(self.header(super::parse_header(name)?))
    }
}

impl Default for ForwardRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ForwardRequestIdLayer {
    type Service = ForwardRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardRequestId {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service of [`ForwardRequestIdLayer`].
#[derive(Clone, Debug)]
pub struct ForwardRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for ForwardRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !req.headers().contains_key(&self.header) {
            let id = req
                .extensions()
                .get::<RequestId>()
                .cloned()
                .or_else(RequestId::current);
            if let Some(id) = id {
                req.headers_mut()
                    .insert(self.header.clone(), id.into_header_value());
            }
        }
        self.inner.call(req)
    }
}
