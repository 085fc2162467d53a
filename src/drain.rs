//! Early refusals of requests whose body is still coming: read a small body to its end (and
//! throw it away) before the refusal is answered.
//!
//! A layer that refuses a request before anything read its body (a 401 for a missing API key,
//! a 429, a 413 by `Content-Length`, a missing signature) would otherwise answer while the
//! client is still sending. Over HTTP/2 (hyper 1, h2 0.4) the answer then goes out in full,
//! followed by `RST_STREAM(NO_ERROR)` to stop the upload (RFC 9113 §8.1). That is correct, but:
//! - some clients report that reset as a stream error and drop the answer (curl 7.88 with
//!   nghttp2 1.52: exit 92, status 000, on a refused 2 MB POST);
//! - the client's DATA frames already in flight arrive on a stream the server has reset; h2
//!   ignores them only while it remembers the stream (the last 50 reset streams, for a
//!   second); past that, each one is answered with `RST_STREAM(STREAM_CLOSED)`, which h2
//!   counts against the connection's budget of locally caused resets (1,024 in hyper) before
//!   it closes the connection with `GOAWAY(ENHANCE_YOUR_CALM)`.
//!
//! So a refusal whose body is not finished and whose declared (or least) length is within
//! [`CAP`] reads the body first, discarding each chunk (nothing is buffered), for at most
//! [`CAP`] bytes, [`MAX_FRAMES`] frames and [`WITHIN`] (or a shorter time the caller gives);
//! the stream then ends cleanly with no reset at all. A larger body is not read: the answer
//! goes at once (and the client sees it before the reset). A request without a body (a GET)
//! never gets here: the check is `is_end_stream()` first.
//!
//! The read does not change the answer: when a request timeout outside the refusal passes
//! while it reads (the client stalls its upload), the refusal stops reading and its own
//! answer goes out (the body's [`Shared`] cell tells the timeout so, and the timeout tells
//! the refusal to stop), not the timeout's 408.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Buf;
use http::{
    HeaderMap,
    header::{CONTENT_LENGTH, EXPECT},
    request,
};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::body_limit::{Handle, Shared};

/// The most bytes a refusal reads from the body before it answers.
pub(crate) const CAP: u64 = 64 * 1024;

/// The most frames a refusal reads (so a body of empty frames cannot keep it busy).
pub(crate) const MAX_FRAMES: u32 = 1024;

/// The longest a refusal waits for the body.
pub(crate) const WITHIN: Duration = Duration::from_secs(1);

/// Whether a refusal should read `body` before answering: it is not finished, what it
/// declares is within [`CAP`], and a tokio runtime is there to bound the wait in time.
#[inline]
pub(crate) fn wanted<B: Body>(body: &B) -> bool {
    !body.is_end_stream()
        && body.size_hint().lower() <= CAP
        && tokio::runtime::Handle::try_current().is_ok()
}

pin_project! {
    /// A refusal answered with `answer` once the body is read (see the module docs).
    pub(crate) struct Refusal<B, T> {
        // `None` once the body is finished, failed, or read as far as it will be.
        #[pin]
        body: Option<B>,
        read: u64,
        frames: u32,
        within: Duration,
        // Boxed and armed only when the body is not there at once.
        sleep: Option<Pin<Box<Sleep>>>,
        answer: Option<T>,
        // The body limit's cell of this body, through which a request timeout outside tells
        // the refusal to stop reading.
        watched: Option<Arc<Shared>>,
    }
}

impl<B: Body, T> Refusal<B, T> {
    fn new(body: B, answer: T, within: Duration, watched: Option<Arc<Shared>>) -> Self {
        if let Some(shared) = &watched {
            shared.set_draining();
        }
        Self {
            body: Some(body),
            read: 0,
            frames: 0,
            within: within.min(WITHIN),
            sleep: None,
            answer: Some(answer),
            watched,
        }
    }

    /// Stops reading: the answer is next (the request timeout passed).
    pub(crate) fn abandon(self: Pin<&mut Self>) {
        self.project().body.set(None);
    }
}

impl<B: Body, T> Future for Refusal<B, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut this = self.project();
        if this.watched.as_ref().is_some_and(|w| w.abandoned()) {
            this.body.set(None);
        }
        while let Some(mut body) = this.body.as_mut().as_pin_mut() {
            if body.is_end_stream() || *this.frames >= MAX_FRAMES || *this.read > CAP {
                this.body.set(None);
                break;
            }
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.frames += 1;
                    if let Some(data) = frame.data_ref() {
                        *this.read = this.read.saturating_add(data.remaining() as u64);
                    }
                    // The frame (and its data) is dropped here: nothing is kept.
                }
                Poll::Ready(Some(Err(_)) | None) => this.body.set(None),
                Poll::Pending => {
                    let within = *this.within;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(within)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.body.set(None);
                }
            }
        }
        match this.answer.take() {
            Some(answer) => Poll::Ready(answer),
            // Polled after completion: a contract breach by the caller; never resolve twice.
            None => Poll::Pending,
        }
    }
}

/// A refusal that reads the body first, boxed (only refusals of unfinished small bodies get
/// here), or the answer at once.
pub(crate) enum Refused<B, T> {
    Now(T),
    Drain(Pin<Box<Refusal<B, T>>>),
}

/// `answer`, after reading `body` if [`wanted`] (for at most `within`, capped at [`WITHIN`])
/// and the client is not waiting for `100 Continue` (see [`read_first`]). A body limit's
/// cell in `head`'s extensions lets a request timeout outside stop the read.
#[inline]
pub(crate) fn refuse<B: Body, T>(
    head: &request::Parts,
    body: B,
    answer: T,
    within: Duration,
) -> Refused<B, T> {
    match read_first(&head.headers, body) {
        Some(body) if wanted(&body) => {
            let watched = head.extensions.get::<Handle>().map(|h| h.0.clone());
            Refused::Drain(Box::pin(Refusal::new(body, answer, within, watched)))
        }
        _ => Refused::Now(answer),
    }
}

/// [`refuse_with`], with `watched`, the cell of the body limit that wraps `body`, through
/// which a request timeout outside stops the read.
#[inline]
pub(crate) fn refuse_watched<B: Body, T>(
    body: Option<B>,
    answer: T,
    within: Duration,
    watched: Option<&Arc<Shared>>,
) -> Refused<B, T> {
    match body {
        Some(body) if wanted(&body) => Refused::Drain(Box::pin(Refusal::new(
            body,
            answer,
            within,
            watched.cloned(),
        ))),
        _ => Refused::Now(answer),
    }
}

/// `body`, unless it is finished or the request carries `Expect: 100-continue` (that client sends no body until
/// told to, and a final status instead of `100 Continue` is the answer it expects,
/// RFC 9110 §10.1.1; reading the body would make hyper ask for it) or a `Content-Length`
/// above [`CAP`] (even if the body's size hint does not know it).
#[inline]
pub(crate) fn read_first<B: Body>(headers: &HeaderMap, body: B) -> Option<B> {
    // First, and alone for a request without a body (a refused GET): no header lookup.
    if body.is_end_stream() {
        return None;
    }
    let waits = headers
        .get_all(EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let large = headers.get_all(CONTENT_LENGTH).iter().any(|v| {
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|n| n > CAP)
    });
    if waits || large { None } else { Some(body) }
}

/// [`refuse`] with the body from [`read_first`] (`None`: answer at once).
#[inline]
pub(crate) fn refuse_with<B: Body, T>(
    body: Option<B>,
    answer: T,
    within: Duration,
) -> Refused<B, T> {
    refuse_watched(body, answer, within, None)
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
    };

    use bytes::Bytes;
    use http_body::{Frame, SizeHint};

    use super::*;

    /// A request head with `headers`.
    fn head(headers: HeaderMap) -> request::Parts {
        let (mut head, ()) = http::Request::new(()).into_parts();
        head.headers = headers;
        head
    }

    /// A body of `chunks`, then pending forever (unless `ends`); counts the bytes handed out.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        ends: bool,
        given: Arc<AtomicU64>,
        hint: SizeHint,
    }

    impl Chunks {
        fn new(n: usize, size: usize, ends: bool) -> (Self, Arc<AtomicU64>) {
            let given = Arc::new(AtomicU64::new(0));
            let body = Self {
                chunks: (0..n).map(|_| Bytes::from(vec![b'x'; size])).collect(),
                ends,
                given: given.clone(),
                hint: SizeHint::new(),
            };
            (body, given)
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            match self.chunks.pop_front() {
                Some(c) => {
                    self.given.fetch_add(c.len() as u64, Ordering::Relaxed);
                    Poll::Ready(Some(Ok(Frame::data(c))))
                }
                None if self.ends => Poll::Ready(None),
                None => Poll::Pending,
            }
        }

        fn is_end_stream(&self) -> bool {
            self.ends && self.chunks.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            self.hint
        }
    }

    #[tokio::test]
    async fn a_small_body_is_read_to_its_end_first() {
        let (body, given) = Chunks::new(4, 1000, true);
        let Refused::Drain(refusal) = refuse(&head(HeaderMap::new()), body, 7, WITHIN) else {
            panic!("an unfinished small body is drained");
        };
        assert_eq!(refusal.await, 7);
        assert_eq!(given.load(Ordering::Relaxed), 4000);
    }

    #[tokio::test]
    async fn a_finished_or_large_body_is_not_read() {
        let (body, _) = Chunks::new(0, 0, true);
        assert!(matches!(
            refuse(&head(HeaderMap::new()), body, 1, WITHIN),
            Refused::Now(1)
        ));
        let (mut body, given) = Chunks::new(10, 1000, true);
        body.hint = SizeHint::with_exact(CAP + 1);
        assert!(matches!(
            refuse(&head(HeaderMap::new()), body, 2, WITHIN),
            Refused::Now(2)
        ));
        assert_eq!(given.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn reading_stops_past_the_cap() {
        // 2 MB announced by nothing: read up to just past the cap, not further.
        let (body, given) = Chunks::new(128, 16 * 1024, true);
        let Refused::Drain(refusal) = refuse(&head(HeaderMap::new()), body, (), WITHIN) else {
            panic!("no declared length: drained up to the cap");
        };
        refusal.await;
        let read = given.load(Ordering::Relaxed);
        assert!(read > CAP && read <= CAP + 16 * 1024, "read {read}");
    }

    #[tokio::test]
    async fn empty_frames_do_not_keep_it_busy() {
        let (body, given) = Chunks::new(100_000, 0, true);
        let Refused::Drain(refusal) = refuse(&head(HeaderMap::new()), body, (), WITHIN) else {
            panic!("drained");
        };
        refusal.await;
        assert_eq!(given.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_waited_for_at_most_the_time_given() {
        let (body, _) = Chunks::new(1, 10, false);
        let start = tokio::time::Instant::now();
        let Refused::Drain(refusal) = refuse(
            &head(HeaderMap::new()),
            body,
            (),
            Duration::from_millis(300),
        ) else {
            panic!("drained");
        };
        refusal.await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));

        let (body, _) = Chunks::new(1, 10, false);
        let start = tokio::time::Instant::now();
        let Refused::Drain(refusal) =
            refuse(&head(HeaderMap::new()), body, (), Duration::from_secs(3600))
        else {
            panic!("drained");
        };
        refusal.await;
        assert_eq!(start.elapsed(), WITHIN, "never longer than WITHIN");
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_is_answered_at_once() {
        let mut headers = HeaderMap::new();
        headers.insert(EXPECT, http::HeaderValue::from_static("100-Continue"));
        let (body, given) = Chunks::new(1, 10, false);
        assert!(matches!(
            refuse(&head(headers.clone()), body, 4, WITHIN),
            Refused::Now(4)
        ));
        assert_eq!(given.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_declared_length_above_the_cap_is_not_read() {
        for declared in ["65537", "99999999999999999999999", "nonsense"] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, http::HeaderValue::from_static(declared));
            let (body, given) = Chunks::new(1, 10, false);
            assert!(matches!(
                refuse(&head(headers.clone()), body, 5, WITHIN),
                Refused::Now(5)
            ));
            assert_eq!(given.load(Ordering::Relaxed), 0);
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from_static("65536"));
        let (body, _) = Chunks::new(1, 10, true);
        assert!(matches!(
            refuse(&head(headers.clone()), body, 6, WITHIN),
            Refused::Drain(_)
        ));
    }

    #[test]
    fn without_a_runtime_it_answers_at_once() {
        let (body, given) = Chunks::new(1, 10, false);
        assert!(matches!(
            refuse(&head(HeaderMap::new()), body, 3, WITHIN),
            Refused::Now(3)
        ));
        assert_eq!(given.load(Ordering::Relaxed), 0);
    }
}
