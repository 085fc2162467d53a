use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use super::RequestId;

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// The id of the request being handled by the current task, if any.
    ///
    /// `SetRequestId` sets it around the inner service's `call` and every poll of its future, so
    /// a handler (and anything it calls or `.await`s) sees it. A task started with
    /// `tokio::spawn` does not inherit it: wrap the spawned future in [`RequestId::scope`].
    /// Blocking threads (`spawn_blocking`) do not see it either; use
    /// [`RequestId::sync_scope`] there.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Self::clone).ok()
    }

    /// Runs `future` with `self` as the [`current`](Self::current) request id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use battlement::request_id::RequestId;
    ///
    /// let id: RequestId = "order-42".parse().unwrap();
    /// let seen = tokio::spawn(id.scope(async { RequestId::current() })).await.unwrap();
    /// assert_eq!(seen.unwrap().as_str(), "order-42");
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            inner: CURRENT.scope(self, future),
        }
    }

    /// Runs `f` with `self` as the [`current`](Self::current) request id.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

pin_project! {
    /// A future run with a [`RequestId`] as the current one: see [`RequestId::scope`].
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        inner: TaskLocalFuture<RequestId, F>,
    }
}

impl<F> Scoped<F> {
    /// Takes the id back out (after the future completed, typically). The future no longer
    /// sees it if polled again.
    pub(crate) fn take_id(self: Pin<&mut Self>) -> Option<RequestId> {
        self.project().inner.take_value()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
