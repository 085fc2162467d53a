//! The request body wrapper that enforces the limit on streamed bytes.

use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::request_id::RequestId;

/// A boxed error, as `http_body_util::Limited` and axum's `Body` use.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The state one request shares between its body, the layer's future, any inner (per-route)
/// [`BodyLimitLayer`](super::BodyLimitLayer) and an inner request timeout: the effective limit,
/// the ceiling an inner layer may raise it to, whether the body went past it, and whether the
/// body is waiting for the client (its last read found no data yet).
///
/// Allocated only for bodies that are not already over when the request comes in (a `GET`
/// without a body needs none).
#[derive(Debug)]
pub(crate) struct Shared {
    limit: AtomicU64,
    ceiling: u64,
    exceeded: AtomicBool,
    // The last poll of the body was `Pending` and the body is not over: whoever reads it waits
    // for the client. A request timeout passing then is the client's fault (408), not the
    // handler's (503).
    waiting: AtomicBool,
    // A refusal reads the body only to end the stream cleanly (`crate::drain`): its answer is
    // decided, and a request timeout passing meanwhile must not replace it.
    draining: AtomicBool,
    // The request timeout passed during that read: the refusal answers at once.
    abandoned: AtomicBool,
    /// For the 413, should the body cross the limit: kept here rather than in the future,
    /// so that the common path's future stays small.
    pub(crate) declared: Option<u64>,
    pub(crate) request_id: Option<RequestId>,
    /// The request is gRPC: the 413 is a trailers-only `RESOURCE_EXHAUSTED`.
    pub(crate) grpc: bool,
}

impl Shared {
    pub(crate) fn new(limit: u64, ceiling: u64) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            ceiling,
            exceeded: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            declared: None,
            request_id: None,
            grpc: false,
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit, no higher than the ceiling; returns the limit now in force.
    pub(crate) fn set_limit(&self, limit: u64) -> u64 {
        let limit = limit.min(self.ceiling);
        self.limit.store(limit, Ordering::Relaxed);
        limit
    }

    pub(crate) fn exceeded(&self) -> bool {
        // Pairs with the `Release` store in `mark_exceeded`: the handler that saw the body error
        // and answered happened before the future reads this.
        self.exceeded.load(Ordering::Acquire)
    }

    /// Whether the body is unfinished and its reader waits for the client to send more.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Marks the body as read by a refusal whose answer is decided (`crate::drain`).
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a refusal whose answer is decided is reading the body.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells that refusal to stop reading and answer (the request timeout passed).
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Whether the request timeout told the refusal to stop reading.
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    #[inline]
    fn set_waiting(&self, waiting: bool) {
        // Read first: most polls do not change it, and a load does not take the cache line.
        if self.waiting.load(Ordering::Relaxed) != waiting {
            self.waiting.store(waiting, Ordering::Relaxed);
        }
    }

    fn mark_exceeded(&self) {
        self.exceeded.store(true, Ordering::Release);
    }
}

/// The request extension through which an inner [`BodyLimitLayer`](super::BodyLimitLayer)
/// finds (and overrides) the limit of an outer one.
#[derive(Clone, Debug)]
pub(crate) struct Handle(pub(crate) Arc<Shared>);

/// The error a [`RequestBody`] yields once more bytes arrive than the limit (or the declared
/// `Content-Length`) allows.
///
/// The bytes past the limit are never handed out: the frame that crosses it is dropped and the
/// body ends. Handlers rarely see this error's details: the layer answers 413 for them (see the
/// [module docs](super)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthLimitExceeded {
    limit: u64,
}

impl LengthLimitExceeded {
    /// The number of bytes that were allowed.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for LengthLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body length limit exceeded ({} bytes allowed)",
            self.limit
        )
    }
}

impl std::error::Error for LengthLimitExceeded {}

/// The value of `RequestBody::read` once the body ended.
const DONE: u64 = u64::MAX;

pin_project! {
    /// The request body as the inner service sees it behind a
    /// [`BodyLimitLayer`](super::BodyLimitLayer).
    ///
    /// It hands out at most the limit, and at most the declared `Content-Length`, of data; the
    /// frame that would go past either ends the body with a [`LengthLimitExceeded`] error (boxed,
    /// like `http_body_util::Limited`'s). Past the limit it also tells the layer, which then
    /// answers 413 whatever the handler responded.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        // Data bytes handed out so far; `DONE` once the body ended (after its last frame or an
        // error: nothing more is polled). No real body reaches 2^64 - 1 bytes, and a separate
        // flag would make the body (moved with the request, and inside the handler's future)
        // a word larger.
        read: u64,
        // The most bytes handed out: min(limit, declared length) when there is no shared cell;
        // the declared length with one (the limit is in the cell). `u64::MAX` when unknown (a
        // declared `u64::MAX` is treated as unknown: the limit still applies).
        cap: u64,
        shared: Option<Arc<Shared>>,
    }
}

impl<B> RequestBody<B> {
    /// A body that enforces `limit` and the `declared` length by itself.
    pub(crate) fn fixed(inner: B, limit: u64, declared: u64) -> Self {
        Self {
            inner,
            read: 0,
            cap: limit.min(declared),
            shared: None,
        }
    }

    /// A body whose limit lives in `shared` (an inner layer may change it).
    pub(crate) fn shared(inner: B, shared: Arc<Shared>, declared: u64) -> Self {
        Self {
            inner,
            read: 0,
            cap: declared,
            shared: Some(shared),
        }
    }

    /// A body that an outer layer already limits: passes everything through.
    pub(crate) fn unlimited(inner: B) -> Self {
        Self::fixed(inner, u64::MAX, u64::MAX)
    }

    /// The most bytes this body hands out now: the limit, or the declared length if smaller.
    pub fn limit(&self) -> u64 {
        match &self.shared {
            Some(shared) => shared.limit().min(self.cap),
            None => self.cap,
        }
    }

    /// The body this one wraps.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Consumes the wrapper, returning the body it wraps (and dropping the limit).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("limit", &self.limit())
            .field("read", &(self.read != DONE).then_some(self.read))
            .finish_non_exhaustive()
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.read == DONE {
            return Poll::Ready(None);
        }
        // In a shared cell the limit may have been changed by an inner layer.
        let (cap, limit) = match this.shared {
            Some(shared) => {
                let limit = shared.limit();
                // A declared length over the limit (an outer layer let it through for an inner
                // one to raise the limit, which it did not): refuse before reading a byte.
                if *this.cap != u64::MAX && *this.cap > limit {
                    *this.read = DONE;
                    return Poll::Ready(Some(Err(exceeded(Some(shared), limit))));
                }
                ((*this.cap).min(limit), limit)
            }
            None => (*this.cap, u64::MAX),
        };
        let polled = this.inner.poll_frame(cx);
        if let Some(shared) = this.shared {
            shared.set_waiting(polled.is_pending());
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                *this.read = DONE;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                *this.read = DONE;
                Poll::Ready(Some(Err(box_error(err))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let read = this.read.saturating_add(data.remaining() as u64);
                    if read > cap {
                        *this.read = DONE;
                        // Past the declared length but within the limit is a lying peer, not a
                        // large body: the body errors, but the handler's answer stands.
                        let shared = this.shared.as_ref().filter(|_| read > limit);
                        return Poll::Ready(Some(Err(exceeded(shared, cap))));
                    }
                    *this.read = read;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.read == DONE || self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let cap = self.limit().saturating_sub(self.read);
        let upper = inner.upper().map_or(cap, |u| u.min(cap));
        let mut hint = SizeHint::new();
        hint.set_upper(upper);
        hint.set_lower(inner.lower().min(upper));
        hint
    }
}

// The error paths are out of line so that `poll_frame` stays small enough to inline into
// whatever reads the body.
#[cold]
#[inline(never)]
fn exceeded(shared: Option<&Arc<Shared>>, limit: u64) -> BoxError {
    if let Some(shared) = shared {
        shared.mark_exceeded();
    }
    Box::new(LengthLimitExceeded { limit })
}

#[cold]
#[inline(never)]
fn box_error<E: Into<BoxError>>(err: E) -> BoxError {
    err.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// Frames from a list; counts polls; its size hint can lie.
    struct Chunks {
        frames: VecDeque<Bytes>,
        polls: usize,
        hint: Option<u64>,
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks {
            frames: parts.iter().map(|p| Bytes::from_static(p)).collect(),
            polls: 0,
            hint: None,
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = self.get_mut();
            this.polls += 1;
            Poll::Ready(this.frames.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn size_hint(&self) -> SizeHint {
            self.hint.map_or_else(SizeHint::new, SizeHint::with_exact)
        }
    }

    async fn collect<B>(body: B) -> Result<Bytes, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn exactly_at_the_limit_passes() {
        let body = RequestBody::fixed(chunks(&[b"abc", b"de"]), 5, u64::MAX);
        assert_eq!(collect(body).await.unwrap(), "abcde");
    }

    #[tokio::test]
    async fn the_crossing_frame_is_not_handed_out() {
        let mut body = RequestBody::fixed(chunks(&[b"abc", b"def", b"g"]), 5, u64::MAX);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "abc");
        let err = body.frame().await.unwrap().unwrap_err();
        let err = err.downcast::<LengthLimitExceeded>().unwrap();
        assert_eq!(err.limit(), 5);
        // The body is over: the rest is never polled.
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
        assert_eq!(body.get_ref().polls, 2);
    }

    #[tokio::test]
    async fn a_lying_length_stops_at_the_declared_length() {
        // Declares 4 bytes, sends 6; the limit (100) is not the problem.
        let shared = Arc::new(Shared::new(100, 100));
        let body = RequestBody::shared(chunks(&[b"abc", b"def"]), shared.clone(), 4);
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.downcast::<LengthLimitExceeded>().unwrap().limit(), 4);
        // Not a 413: the handler's answer to a broken body stands.
        assert!(!shared.exceeded());
    }

    #[tokio::test]
    async fn shared_limit_signals_and_follows_overrides() {
        let shared = Arc::new(Shared::new(4, 8));
        // An inner layer raises it, within the ceiling only.
        assert_eq!(shared.set_limit(100), 8);
        let body = RequestBody::shared(chunks(&[b"abcd", b"efgh"]), shared.clone(), u64::MAX);
        assert_eq!(collect(body).await.unwrap(), "abcdefgh");
        assert!(!shared.exceeded());
        let body = RequestBody::shared(chunks(&[b"abcd", b"efgh", b"i"]), shared.clone(), u64::MAX);
        assert!(collect(body).await.is_err());
        assert!(shared.exceeded());
    }

    #[tokio::test]
    async fn declared_over_the_limit_fails_before_reading() {
        let shared = Arc::new(Shared::new(4, 8));
        let mut body = RequestBody::shared(chunks(&[b"abcdef"]), shared.clone(), 6);
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(body.get_ref().polls, 0);
        assert!(shared.exceeded());
    }

    /// Pending until `ready` is set, then the frames of `chunks`.
    struct Stalls {
        ready: bool,
        inner: Chunks,
    }

    impl Body for Stalls {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = self.get_mut();
            if this.ready {
                Pin::new(&mut this.inner).poll_frame(cx)
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn a_read_waiting_for_the_client_is_seen() {
        let shared = Arc::new(Shared::new(100, 100));
        let inner = Stalls {
            ready: false,
            inner: chunks(&[b"abc"]),
        };
        let mut body = RequestBody::shared(inner, shared.clone(), 3);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Never read: nobody waits for the client.
        assert!(!shared.waiting());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(shared.waiting());
        body.inner.ready = true;
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(!shared.waiting());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(!shared.waiting());
    }

    #[tokio::test]
    async fn unlimited_passes_everything() {
        let body = RequestBody::unlimited(chunks(&[b"abc", b"def"]));
        assert_eq!(collect(body).await.unwrap(), "abcdef");
    }

    #[test]
    fn size_hint_is_capped_and_consistent() {
        let mut inner = chunks(&[]);
        inner.hint = Some(10);
        let body = RequestBody::fixed(inner, 4, u64::MAX);
        let hint = body.size_hint();
        assert_eq!(hint.upper(), Some(4));
        assert!(hint.lower() <= 4);
        let mut inner = chunks(&[]);
        inner.hint = Some(3);
        let body = RequestBody::fixed(inner, 4, 3);
        assert_eq!(body.size_hint().exact(), Some(3));
    }

    proptest::proptest! {
        #[test]
        fn never_hands_out_more_than_the_limit_or_the_declared_length(
            sizes in proptest::collection::vec(0usize..64, 0..12),
            limit in 0u64..400,
            declared in proptest::option::of(0u64..400),
        ) {
            let total: u64 = sizes.iter().map(|&n| n as u64).sum();
            let frames = sizes.iter().map(|&n| Bytes::from(vec![0; n])).collect();
            let inner = Chunks { frames, polls: 0, hint: None };
            let shared = Arc::new(Shared::new(limit, limit));
            let mut body = RequestBody::shared(inner, shared.clone(), declared.unwrap_or(u64::MAX));
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (seen, failed) = rt.block_on(async {
                let (mut seen, mut failed) = (0u64, false);
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => seen += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => failed = true,
                    }
                }
                (seen, failed)
            });
            let cap = limit.min(declared.unwrap_or(u64::MAX));
            proptest::prop_assert!(seen <= cap);
            // A declared length over the limit fails before reading anything.
            proptest::prop_assert_eq!(failed, total > cap || declared.is_some_and(|d| d > limit));
            if !failed {
                proptest::prop_assert_eq!(seen, total);
            }
            // Only going past the limit (not past a lying declared length) asks for the 413:
            // a declared length over the limit, or the frame that crossed the cap also crossing
            // the limit.
            let mut sum = 0;
            let crossing = sizes.iter().find_map(|&n| {
                sum += n as u64;
                (sum > cap).then_some(sum)
            });
            let over_limit = declared.is_some_and(|d| d > limit) || crossing.is_some_and(|c| c > limit);
            proptest::prop_assert_eq!(shared.exceeded(), over_limit);
        }
    }
}
