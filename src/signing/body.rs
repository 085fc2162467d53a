//! The buffered body handed on after verification (or signing), and the bounded collector.

use std::{
    convert::Infallible,
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::digest::Hasher;

/// A request body that was read whole, up to the layer's limit, and checked: the exact bytes the
/// client sent, in one frame.
///
/// [`VerifySignatureLayer`](super::VerifySignatureLayer) and
/// [`VerifyWebhookLayer`](super::webhooks::VerifyWebhookLayer) hand it to the inner service,
/// [`SignRequestLayer`](super::SignRequestLayer) to the client. It implements
/// [`http_body::Body`] with `Data = Bytes`, so axum's `Router` and hyper's client accept it.
#[derive(Clone, Default)]
pub struct BufferedBody {
    data: Option<Bytes>,
}

impl BufferedBody {
    /// A body of `bytes` (empty bytes make an empty body).
    pub fn new(bytes: Bytes) -> Self {
        Self {
            data: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// An empty body.
    pub const fn empty() -> Self {
        Self { data: None }
    }

    /// The bytes not yet polled.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    /// The bytes, consuming the body.
    pub fn into_bytes(self) -> Bytes {
        self.data.unwrap_or_default()
    }
}

impl From<Bytes> for BufferedBody {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for BufferedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedBody")
            .field("len", &self.data.as_ref().map_or(0, Bytes::len))
            .finish()
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The body was larger than the limit.
#[derive(Debug)]
pub(crate) struct TooLarge;

/// Collects body frames up to a limit, hashing them on the way when asked.
///
/// A body that arrives in one frame is kept as that `Bytes` (no copy); more frames are copied
/// once into one buffer.
#[derive(Debug)]
pub(crate) struct Collect {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: usize,
    limit: usize,
    pub(crate) hasher: Option<Hasher>,
}

impl Collect {
    pub(crate) fn new(limit: usize, hasher: Option<Hasher>) -> Self {
        Self {
            first: None,
            rest: None,
            len: 0,
            limit,
            hasher,
        }
    }

    pub(crate) fn push(&mut self, mut data: impl Buf, size_hint: usize) -> Result<(), TooLarge> {
        let n = data.remaining();
        if n == 0 {
            return Ok(());
        }
        if self.len.saturating_add(n) > self.limit {
            return Err(TooLarge);
        }
        self.len += n;
        let chunk = data.copy_to_bytes(n);
        if let Some(h) = &mut self.hasher {
            h.update(&chunk);
        }
        match (&mut self.first, &mut self.rest) {
            (None, None) => self.first = Some(chunk),
            (Some(first), None) => {
                let cap = size_hint.clamp(self.len, self.limit);
                let mut buf = BytesMut::with_capacity(cap);
                buf.extend_from_slice(first);
                buf.extend_from_slice(&chunk);
                self.first = None;
                self.rest = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&chunk),
        }
        Ok(())
    }

    /// Polls `body` to its end. `Ok(())` when done.
    pub(crate) fn poll_body<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), CollectError>>
    where
        B: Body,
        B::Error: Into<tower::BoxError>,
    {
        loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(CollectError::Body(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not covered by a content digest; they are dropped.
                    if let Ok(data) = frame.into_data() {
                        let hint = usize::try_from(body.size_hint().lower())
                            .unwrap_or(usize::MAX)
                            .saturating_add(self.len)
                            .saturating_add(data.remaining());
                        if self.push(data, hint).is_err() {
                            return Poll::Ready(Err(CollectError::TooLarge));
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn finish(&mut self) -> (Bytes, Option<Hasher>) {
        let bytes = match (self.first.take(), self.rest.take()) {
            (Some(b), _) => b,
            (None, Some(buf)) => buf.freeze(),
            (None, None) => Bytes::new(),
        };
        (bytes, self.hasher.take())
    }
}

/// Why collecting a body failed.
#[derive(Debug)]
pub(crate) enum CollectError {
    TooLarge,
    Body(tower::BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn buffered_body_yields_its_bytes_once() {
        let body = BufferedBody::new(Bytes::from_static(b"abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"abc");
        assert!(BufferedBody::new(Bytes::new()).is_end_stream());
    }

    #[test]
    fn collect_enforces_the_limit_and_keeps_one_frame_without_copy() {
        let mut c = Collect::new(5, None);
        let one = Bytes::from_static(b"abc");
        c.push(one.clone(), 3).unwrap();
        let (b, _) = c.finish();
        assert_eq!(b.as_ptr(), one.as_ptr());
        let mut c = Collect::new(5, None);
        c.push(Bytes::from_static(b"abc"), 0).unwrap();
        c.push(Bytes::from_static(b"de"), 0).unwrap();
        assert!(c.push(Bytes::from_static(b"f"), 0).is_err());
        assert_eq!(&c.finish().0[..], b"abcde");
    }
}
