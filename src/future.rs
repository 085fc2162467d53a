//! The response future the layers share: the inner service's future, or the layer's own
//! answer (at once, or once a small request body still coming is read: `crate::drain`).
//!
//! One polled-after-completion policy for all of them: a future polled again after it
//! resolved (which the `Future` contract leaves unspecified) stays pending; it never
//! resolves twice and never panics (a panic there would take down the connection's task in
//! the layers that exist to answer cleanly).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::Body;
use pin_project_lite::pin_project;

use crate::drain::{Refusal, Refused};

pin_project! {
    /// The inner future `F`, or an answer `T` of the layer's own; `B` is the request body a
    /// refusal reads first.
    #[project = AnswerProj]
    pub(crate) enum Answer<F, T, B> {
        Inner { #[pin] future: F },
        Ready { answer: Option<T> },
        // Boxed: only refusals of small bodies still coming get here.
        Draining { refusal: Pin<Box<Refusal<B, T>>> },
    }
}

impl<F, T, B> Answer<F, T, B> {
    /// The inner service's future.
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        Self::Inner { future }
    }

    /// The layer's answer, at once.
    #[inline]
    pub(crate) fn ready(answer: T) -> Self {
        Self::Ready {
            answer: Some(answer),
        }
    }

    /// A refusal, at once or once the body is read (`crate::drain::refuse`).
    #[inline]
    pub(crate) fn refused(refused: Refused<B, T>) -> Self {
        match refused {
            Refused::Now(answer) => Self::ready(answer),
            Refused::Drain(refusal) => Self::Draining { refusal },
        }
    }

    /// What it is waiting for, for `Debug`.
    pub(crate) fn state(&self) -> &'static str {
        match self {
            Self::Inner { .. } => "inner",
            Self::Ready { .. } => "ready",
            Self::Draining { .. } => "refused (reading the body first)",
        }
    }
}

impl<F, T, E, B> Future for Answer<F, T, B>
where
    F: Future<Output = Result<T, E>>,
    B: Body,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Inner { future } => future.poll(cx),
            AnswerProj::Ready { answer } => match answer.take() {
                Some(answer) => Poll::Ready(Ok(answer)),
                // Polled after completion: see the module docs.
                None => Poll::Pending,
            },
            AnswerProj::Draining { refusal } => refusal.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The request body of a layer that never reads one before answering (its `Answer` is never
/// `Draining`).
pub(crate) enum NoBody {}

impl Body for NoBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match *self {}
    }
}

impl<F, T, B> fmt::Debug for Answer<F, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, future::poll_fn};

    use super::*;

    #[tokio::test]
    async fn a_ready_answer_resolves_once_then_stays_pending() {
        let mut fut = Box::pin(Answer::<
            std::future::Ready<Result<u8, Infallible>>,
            u8,
            NoBody,
        >::ready(7));
        assert_eq!(fut.as_mut().await, Ok(7));
        let again = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(again.is_pending());
    }

    #[tokio::test]
    async fn the_inner_future_is_polled() {
        let fut = Answer::<_, u8, NoBody>::inner(async { Ok::<_, Infallible>(3) });
        assert_eq!(fut.await, Ok(3));
    }
}
