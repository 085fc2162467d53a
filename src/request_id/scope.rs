use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use super::RequestId;

thread_local! {
    /// The id of the request whose future is being polled on this thread: a task-local value
    /// kept the way `tokio::task_local!` keeps one (swapped in around each poll), without its
    /// extra layers on the request path.
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// Swaps `slot` into [`CURRENT`] and back when dropped (also on unwind), so scopes nest.
pub(crate) struct Enter<'a> {
    slot: &'a mut Option<RequestId>,
}

impl<'a> Enter<'a> {
    pub(crate) fn new(slot: &'a mut Option<RequestId>) -> Self {
        swap(slot);
        Self { slot }
    }
}

impl Drop for Enter<'_> {
    fn drop(&mut self) {
        swap(self.slot);
    }
}

fn swap(slot: &mut Option<RequestId>) {
    // Only fails while the thread is being torn down; then there is no current id.
    let _ = CURRENT.try_with(|current| {
        let outer = current.replace(slot.take());
        *slot = outer;
    });
}

impl RequestId {
    /// The id of the request being handled by the current task, if any.
    ///
    /// `SetRequestId` sets it while the inner service's future is polled, so a handler (and
    /// anything it calls or `.await`s) sees it. A task started with `tokio::spawn` does not
    /// inherit it: wrap the spawned future in [`RequestId::scope`]. Blocking threads
    /// (`spawn_blocking`) do not see it either; use [`RequestId::sync_scope`] there.
    pub fn current() -> Option<Self> {
        CURRENT
            .try_with(|current| {
                let id = current.take();
                let copy = id.clone();
                current.set(id);
                copy
            })
            .ok()
            .flatten()
    }

    /// Runs `future` with `self` as the [`current`](Self::current) request id (like
    /// `tokio::task_local!`'s `scope`: set around each poll, restored after).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use battlement::request_id::RequestId;
    ///
    /// let id: RequestId = "order-42".parse().unwrap();
    /// let seen = tokio::spawn(id.scope(async { RequestId::current() })).await.unwrap();
    /// assert_eq!(seen.unwrap().as_str(), "order-42");
    /// assert_eq!(RequestId::current(), None);
    /// # }
    /// ```
    #[inline]
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped::new(future, self)
    }

    /// Runs `f` with `self` as the [`current`](Self::current) request id.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let mut slot = Some(self);
        let _enter = Enter::new(&mut slot);
        f()
    }
}

pin_project! {
    /// A future run with a [`RequestId`] as the current one: see [`RequestId::scope`].
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        id: Option<RequestId>,
    }
}

impl<F> Scoped<F> {
    #[inline]
    pub(crate) fn new(inner: F, id: RequestId) -> Self {
        Self {
            inner,
            id: Some(id),
        }
    }

    /// Takes the id back out (after the future completed, typically). The future no longer
    /// sees it if polled again.
    pub(crate) fn take_id(self: Pin<&mut Self>) -> Option<RequestId> {
        self.project().id.take()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = Enter::new(this.id);
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(RequestId::current(), None);
        let a: RequestId = "a".parse().unwrap();
        let b: RequestId = "b".parse().unwrap();
        a.clone().sync_scope(|| {
            assert_eq!(RequestId::current().unwrap().as_str(), "a");
            b.sync_scope(|| assert_eq!(RequestId::current().unwrap().as_str(), "b"));
            assert_eq!(RequestId::current().unwrap().as_str(), "a");
        });
        assert_eq!(RequestId::current(), None);
        let caught = std::panic::catch_unwind(|| a.sync_scope(|| panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(RequestId::current(), None);
    }

    #[tokio::test]
    async fn follows_the_future_not_the_thread() {
        let a: RequestId = "a".parse().unwrap();
        let b: RequestId = "b".parse().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(a.scope(async move {
            rx.await.unwrap();
            RequestId::current()
        }));
        let second = tokio::spawn(b.scope(async move {
            tokio::task::yield_now().await;
            let seen = RequestId::current();
            tx.send(()).unwrap();
            seen
        }));
        assert_eq!(second.await.unwrap().unwrap().as_str(), "b");
        assert_eq!(first.await.unwrap().unwrap().as_str(), "a");
    }
}
