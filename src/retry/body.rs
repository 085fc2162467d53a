//! A request body that can be sent again: buffered, up to a limit, while it is first sent.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::BoxError;

/// The request body the retry service gives its inner service.
///
/// The first attempt streams the original body and keeps a copy of every chunk (a cheap
/// [`Bytes`] clone) up to the policy's body limit; later attempts replay the copy, then go on
/// with the original if the first attempt did not read it all. A body with a known size above
/// the limit is passed through untouched; one that turns out larger while streaming stops
/// being copied. Either way the request is sent once and not retried.
///
/// An empty body costs nothing. The inner service names this type, for example
/// `hyper_util::client::legacy::Client<HttpConnector, ReplayBody<Full<Bytes>>>`.
pub struct ReplayBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Empty,
    Once(B),
    Replay(Replay<B>),
}

struct Replay<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// The original body, while this attempt reads it.
    owned: Option<B>,
    /// Data frames this attempt yielded so far.
    position: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

pub(crate) struct Shared<B> {
    /// The original body, when no attempt holds it and it is not finished.
    body: Option<B>,
    chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// Data frames read from the original so far.
    read: usize,
    /// More than `limit` bytes or a body error: no more replays.
    overflowed: bool,
    end: bool,
    trailers: Option<HeaderMap>,
}

/// The retry service's handle on a request body, to make the body of each new attempt.
pub(crate) enum Replayer<B> {
    Empty,
    Shared {
        shared: Arc<Mutex<Shared<B>>>,
        hint: SizeHint,
    },
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    // Nothing panics while the lock is held except a body's own `poll_frame`; the state stays
    // consistent across such a panic, so a poisoned lock is still usable.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Body<Data = Bytes>> ReplayBody<B> {
    /// The body of the first attempt and, if it can be replayed, its replayer.
    pub(crate) fn new(body: B, limit: usize) -> (Self, Option<Replayer<B>>) {
        if body.is_end_stream() {
            return (Self { kind: Kind::Empty }, Some(Replayer::Empty));
        }
        let hint = body.size_hint();
        if hint.lower() > limit as u64 {
            return (Self::once(body), None);
        }
        let shared = Arc::new(Mutex::new(Shared {
            body: None,
            chunks: Vec::new(),
            buffered: 0,
            limit,
            read: 0,
            overflowed: false,
            end: false,
            trailers: None,
        }));
        let first = Replay {
            shared: shared.clone(),
            owned: Some(body),
            position: 0,
            trailers_sent: false,
            hint,
        };
        (
            Self {
                kind: Kind::Replay(first),
            },
            Some(Replayer::Shared { shared, hint }),
        )
    }

    /// A body sent once, never replayed.
    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once(body),
        }
    }
}

impl<B> Replayer<B> {
    /// Whether another attempt can send the whole body again.
    pub(crate) fn is_replayable(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Shared { shared, .. } => !lock(shared).overflowed,
        }
    }

    /// The body of a new attempt.
    pub(crate) fn attempt(&self) -> ReplayBody<B> {
        let kind = match self {
            Self::Empty => Kind::Empty,
            Self::Shared { shared, hint } => Kind::Replay(Replay {
                shared: shared.clone(),
                owned: None,
                position: 0,
                trailers_sent: false,
                hint: *hint,
            }),
        };
        ReplayBody { kind }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Once(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Replay(replay) => replay.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once(body) => body.is_end_stream(),
            Kind::Replay(replay) => {
                let shared = lock(&replay.shared);
                shared.end
                    && replay.position == shared.read
                    && (replay.trailers_sent || shared.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Once(body) => body.size_hint(),
            Kind::Replay(replay) => replay.hint,
        }
    }
}

impl<B> Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut shared = lock(&self.shared);
        if !shared.overflowed && self.position < shared.chunks.len() {
            let chunk = shared.chunks[self.position].clone();
            self.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.position != shared.read {
            // Chunks this attempt has not sent were read and dropped from the buffer.
            return Poll::Ready(Some(Err("request body cannot be replayed".into())));
        }
        if shared.end {
            if !self.trailers_sent {
                self.trailers_sent = true;
                if let Some(trailers) = shared.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
            return Poll::Ready(None);
        }
        if self.owned.is_none() {
            self.owned = shared.body.take();
        }
        let Some(body) = self.owned.as_mut() else {
            return Poll::Ready(Some(Err(
                "request body is still being sent by a previous attempt".into(),
            )));
        };
        match ready!(Pin::new(body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    shared.read += 1;
                    self.position += 1;
                    if !shared.overflowed {
                        if shared.buffered + data.len() <= shared.limit {
                            shared.buffered += data.len();
                            shared.chunks.push(data.clone());
                        } else {
                            shared.overflowed = true;
                            shared.chunks = Vec::new();
                            shared.buffered = 0;
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.end = true;
                    self.trailers_sent = true;
                    self.owned = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => {
                shared.overflowed = true;
                shared.chunks = Vec::new();
                self.owned = None;
                Poll::Ready(Some(Err(err.into())))
            }
            None => {
                shared.end = true;
                self.owned = None;
                Poll::Ready(None)
            }
        }
    }
}

impl<B> Drop for Replay<B> {
    fn drop(&mut self) {
        if let Some(body) = self.owned.take() {
            lock(&self.shared).body = Some(body);
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Once(_) => "once",
            Kind::Replay(_) => "replay",
        };
        f.debug_struct("ReplayBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body that yields its chunks one frame at a time, with no size hint.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        Chunks(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }

    async fn collect<B>(body: ReplayBody<B>) -> Result<Bytes, BoxError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn empty_body_is_free() {
        let (body, replay) = ReplayBody::new(Full::new(Bytes::new()), 10);
        assert!(body.is_end_stream());
        assert!(matches!(replay, Some(Replayer::Empty)));
    }

    #[tokio::test]
    async fn replays_a_full_body() {
        let (body, replay) = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 10);
        let replay = replay.unwrap();
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(collect(body).await.unwrap(), "hello");
        assert!(replay.is_replayable());
        let again = replay.attempt();
        assert_eq!(again.size_hint().exact(), Some(5));
        assert_eq!(collect(again).await.unwrap(), "hello");
        assert_eq!(collect(replay.attempt()).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn known_size_over_the_limit_is_sent_once() {
        let (body, replay) = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 4);
        assert!(replay.is_none());
        assert_eq!(collect(body).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn streamed_over_the_limit_stops_buffering() {
        let (body, replay) = ReplayBody::new(chunks(&["ab", "cd", "ef"]), 4);
        let replay = replay.unwrap();
        assert_eq!(collect(body).await.unwrap(), "abcdef");
        assert!(!replay.is_replayable());
    }

    #[tokio::test]
    async fn partial_read_then_replay_continues_with_the_original() {
        let (mut body, replay) = ReplayBody::new(chunks(&["ab", "cd", "ef"]), 100);
        let replay = replay.unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        drop(body);
        assert_eq!(collect(replay.attempt()).await.unwrap(), "abcdef");
        assert_eq!(collect(replay.attempt()).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn body_held_by_a_live_attempt_is_an_error_not_a_hang() {
        let (mut body, replay) = ReplayBody::new(chunks(&["ab", "cd"]), 100);
        let replay = replay.unwrap();
        body.frame().await.unwrap().unwrap();
        let mut second = replay.attempt();
        assert_eq!(
            second.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(second.frame().await.unwrap().is_err());
    }
}
