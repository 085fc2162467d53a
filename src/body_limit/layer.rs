use std::fmt;

use tower::Layer;

use super::BodyLimit;
use crate::problem::DefaultRejection;

/// Limits the size of request bodies: 413 by `Content-Length` before a byte is read, and the
/// same limit on streamed bodies. See the [module docs](super).
///
/// # Refusals while the body is still coming (HTTP/2)
///
/// The 413 by `Content-Length` (or by the body's size hint) is decided before anything reads the request body. If the body is not finished and
/// declares at most 64 KiB, the refusal first reads it to its end (at most 64 KiB, 1,024
/// frames and one second), throwing each chunk away, and answers after: the HTTP/2 stream then
/// ends cleanly instead of being reset while the client is still sending (which some clients
/// report as an error instead of the answer, and which, with the DATA the client had in
/// flight, uses up the connection's budget of resets in hyper/h2). A larger body is not read:
/// the answer goes at once. A request without a body pays nothing, and a client sending
/// `Expect: 100-continue` is answered at once. The wait needs a tokio runtime (without one,
/// the answer goes at once).
///
/// Cheap to clone: two integers and the rejection (a zero-sized type by default).
#[derive(Clone)]
pub struct BodyLimitLayer<R = DefaultRejection> {
    pub(crate) limit: u64,
    pub(crate) ceiling: u64,
    pub(crate) rejection: R,
}

impl BodyLimitLayer {
    /// The limit of [`BodyLimitLayer::default`]: 1 MiB.
    pub const DEFAULT_LIMIT: u64 = 1024 * 1024;

    /// Limits request bodies to `limit` bytes (a body of exactly `limit` bytes passes).
    pub const fn new(limit: u64) -> Self {
        Self {
            limit,
            ceiling: limit,
            rejection: DefaultRejection,
        }
    }
}

impl Default for BodyLimitLayer {
    /// A 1 MiB limit ([`BodyLimitLayer::DEFAULT_LIMIT`]).
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT)
    }
}

impl<R> BodyLimitLayer<R> {
    /// Lets an inner (per-route) `BodyLimitLayer` raise this layer's limit up to `ceiling`
    /// bytes for the requests that reach it.
    ///
    /// By default the ceiling is the limit itself: an inner layer can lower the limit but not
    /// raise it, and a `Content-Length` over the limit is refused here, before the inner service
    /// is called. With a higher ceiling, a request whose `Content-Length` is between the limit
    /// and the ceiling is passed on so that an inner layer can accept it; if none does, its body
    /// fails on the first read (no byte is read) and the answer is 413, but the handler has been
    /// entered. A value below the limit is taken as the limit.
    #[must_use]
    pub fn max_route_limit(mut self, ceiling: u64) -> Self {
        self.ceiling = ceiling.max(self.limit);
        self
    }

    /// Replaces the 413 response (problem+json by default). The layer still inserts
    /// [`PayloadTooLarge`](super::PayloadTooLarge) in the extensions of what `rejection` returns.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> BodyLimitLayer<R2> {
        BodyLimitLayer {
            limit: self.limit,
            ceiling: self.ceiling,
            rejection,
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The highest limit an inner layer may raise this one to (see
    /// [`max_route_limit`](Self::max_route_limit)).
    pub fn max_limit(&self) -> u64 {
        self.ceiling
    }
}

impl<R> fmt::Debug for BodyLimitLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyLimitLayer")
            .field("limit", &self.limit)
            .field("max_route_limit", &self.ceiling)
            .field("rejection", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, R: Clone> Layer<S> for BodyLimitLayer<R> {
    type Service = BodyLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
            ceiling: self.ceiling,
            rejection: self.rejection.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ceiling() {
        let layer = BodyLimitLayer::default();
        assert_eq!(layer.limit(), 1024 * 1024);
        assert_eq!(layer.max_limit(), layer.limit());
        let layer = BodyLimitLayer::new(10).max_route_limit(5);
        assert_eq!(layer.max_limit(), 10);
        let layer = BodyLimitLayer::new(10).max_route_limit(50);
        assert_eq!(layer.max_limit(), 50);
        assert!(format!("{layer:?}").contains("DefaultRejection"));
    }
}
