//! The request body the application sees behind a [`ServerStack`](super::ServerStack).

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{body_limit::RequestBody, signing::BufferedBody};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The request body behind a [`ServerStack`](super::ServerStack), whichever parts are on:
    /// the incoming body `B` read through the body limit (at most the limit, and at most the
    /// declared `Content-Length`, is handed out; past it the body ends with a
    /// [`LengthLimitExceeded`](crate::body_limit::LengthLimitExceeded) error and the stack
    /// answers 413), or the body that signature verification has already read whole and
    /// checked.
    ///
    /// It is an [`http_body::Body`] with `Data = Bytes` (the incoming body's chunks are
    /// handed on as they come: a `Bytes` chunk is not copied) and a boxed error, so an axum
    /// `Router`, a `tower::service_fn` handler or a tonic server take it as it is:
    ///
    /// ```
    /// use std::convert::Infallible;
    ///
    /// use axum::body::Body;
    /// use battlement::{
    ///     net::PeerAddr,
    ///     stack::{ServerStack, StackBody},
    /// };
    /// use http::{Request, Response};
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handler = service_fn(|req: Request<StackBody<Body>>| async move {
    ///     let body = req.into_body().collect().await.unwrap().to_bytes();
    ///     Ok::<_, Infallible>(Response::new(Body::from(format!("{} bytes", body.len()))))
    /// });
    /// let svc = ServerStack::new().layer(handler);
    /// let mut req = Request::post("/").body(Body::from("hello")).unwrap();
    /// // The TCP peer, for the per-address rate limit (what the server's accept loop inserts).
    /// req.extensions_mut().insert(PeerAddr(([203, 0, 113, 7], 40000).into()));
    /// let res = svc.oneshot(req).await.unwrap();
    /// let text = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(text, "5 bytes");
    /// # }
    /// ```
    pub struct StackBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Streamed { #[pin] body: RequestBody<B> },
        Buffered { #[pin] body: BufferedBody },
    }
}

impl<B> StackBody<B> {
    /// The incoming body through the body limit.
    pub(crate) fn streamed(body: RequestBody<B>) -> Self {
        Self {
            kind: Kind::Streamed { body },
        }
    }

    /// A body already read whole (by signature verification).
    pub(crate) fn buffered(body: BufferedBody) -> Self {
        Self {
            kind: Kind::Buffered { body },
        }
    }

    /// The incoming body, without the limit (`None` once read whole).
    pub(crate) fn into_incoming(self) -> Option<B> {
        match self.kind {
            Kind::Streamed { body } => Some(body.into_inner()),
            Kind::Buffered { .. } => None,
        }
    }

    /// The most bytes this body hands out from here: the limit, or the declared length if
    /// smaller (for a body read whole, its length).
    pub fn limit(&self) -> u64 {
        match &self.kind {
            Kind::Streamed { body } => body.limit(),
            Kind::Buffered { body } => body.size_hint().lower(),
        }
    }

    /// Whether signature verification read this body whole before the application saw it.
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }
}

impl<B> fmt::Debug for StackBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Streamed { body } => f.debug_tuple("StackBody").field(body).finish(),
            Kind::Buffered { body } => f.debug_tuple("StackBody").field(body).finish(),
        }
    }
}

impl<B> Body for StackBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Streamed { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                    // `Bytes::copy_to_bytes` hands the bytes on without copying them.
                    frame.map_data(|mut d| d.copy_to_bytes(d.remaining())),
                ))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Buffered { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(e))) => match e {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Streamed { body } => body.is_end_stream(),
            Kind::Buffered { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Streamed { body } => body.size_hint(),
            Kind::Buffered { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn a_buffered_body_hands_out_its_bytes_once() {
        let body =
            StackBody::<Full<Bytes>>::buffered(BufferedBody::new(Bytes::from_static(b"abc")));
        assert!(body.is_buffered());
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        let empty = StackBody::<Full<Bytes>>::buffered(BufferedBody::new(Bytes::new()));
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn a_streamed_body_keeps_the_limit() {
        let inner = RequestBody::fixed(Full::new(Bytes::from_static(b"0123456789")), 4, 10);
        let body = StackBody::streamed(inner);
        assert!(!body.is_buffered());
        assert_eq!(body.limit(), 4);
        let err = body.collect().await.unwrap_err();
        assert!(
            err.downcast_ref::<crate::body_limit::LengthLimitExceeded>()
                .is_some(),
            "{err}"
        );
    }
}
