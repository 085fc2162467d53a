//! The response future shared by the verify and webhook layers: the [gate](crate::signing::gate)
//! (collect the body, bounded; check it; check the replay store), then the inner service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use crate::{
    drain::{self, Refusal, Refused},
    problem::MakeRejection,
    signing::{
        body::BufferedBody,
        gate::{Begin, Gate},
        replay::ReplayStore,
    },
};

pin_project! {
    /// Response future of [`VerifySignature`](super::VerifySignature) and
    /// [`VerifyWebhook`](crate::signing::webhooks::VerifyWebhook).
    pub struct ResponseFuture<S, B, St, R>
    where
        S: Service<Request<BufferedBody>>,
        St: ReplayStore,
    {
        #[pin]
        kind: Kind<S, B, S::Future, St, R, S::Response>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B, F, St, R, Res>
    where
        St: ReplayStore,
    {
        Done { response: Option<Res> },
        // Refused before the body was read; answered once a small body still coming is read
        // (boxed: only such refusals get here).
        Draining { refusal: Pin<Box<Refusal<B, Res>>> },
        // The head passed: the gate reads and checks the body; `inner` is the service that
        // was made ready by `poll_ready` (swapped out in `call`).
        Gate {
            #[pin]
            gate: Gate<B, St, R, Res>,
            inner: Option<S>,
        },
        Inner { #[pin] fut: F },
    }
}

impl<S, B, St, R> ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>>,
    St: ReplayStore,
{
    /// The future of a request that went through `begin` (or `begin_webhook`): an early
    /// refusal drains a small body still coming, then answers; otherwise the gate, then the
    /// inner service, taken out of `inner` (the ready one; a clone stays behind).
    pub(crate) fn new(begin: Begin<B, St, R, S::Response>, inner: &mut S) -> Self
    where
        S: Clone,
        B: Body,
    {
        let kind = match begin {
            Begin::Refuse(response, head, body) => {
                match drain::refuse(&head, body, response, drain::WITHIN) {
                    Refused::Now(response) => Kind::Done {
                        response: Some(response),
                    },
                    Refused::Drain(refusal) => Kind::Draining { refusal },
                }
            }
            Begin::Collect(gate) => {
                let clone = inner.clone();
                Kind::Gate {
                    gate,
                    inner: Some(std::mem::replace(inner, clone)),
                }
            }
        };
        Self { kind }
    }
}

impl<S, B, St, R, ResBody> Future for ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<tower::BoxError>,
    St: ReplayStore,
    R: MakeRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Done { response } => {
                    // Polling a completed future is a caller bug (the `Future` contract).
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
                KindProj::Inner { fut } => return fut.poll(cx),
                KindProj::Draining { refusal } => return refusal.as_mut().poll(cx).map(Ok),
                KindProj::Gate { gate, inner } => match ready!(gate.poll(cx)) {
                    Err(response) => Kind::Done {
                        response: Some(response),
                    },
                    Ok(req) => {
                        let Some(mut inner) = inner.take() else {
                            unreachable!("the inner service is present until the gate resolves")
                        };
                        Kind::Inner {
                            fut: inner.call(req),
                        }
                    }
                },
            };
            this.kind.set(next);
        }
    }
}

impl<S, B, St, R> fmt::Debug for ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>>,
    St: ReplayStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
