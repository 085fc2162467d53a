//! Response future of [`SignRequest`](super::SignRequest).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::layer::Signer;
use crate::signing::{
    body::{BufferedBody, Collect, CollectError},
    error::{SignError, SignErrorKind},
};

pin_project! {
    /// Response future of [`SignRequest`](super::SignRequest): buffers the body, signs, calls.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<BufferedBody>>,
    {
        #[pin]
        kind: Kind<S, B, S::Future>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B, F> {
        Failed { error: Option<SignError> },
        Collect {
            #[pin]
            body: B,
            collect: Collect,
            pending: Option<(S, Parts, Arc<Signer>)>,
        },
        Inner { #[pin] fut: F },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<BufferedBody>>,
{
    pub(crate) fn failed(error: SignError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }

    pub(crate) fn collect(
        body: B,
        collect: Collect,
        inner: S,
        parts: Parts,
        signer: Arc<Signer>,
    ) -> Self {
        Self {
            kind: Kind::Collect {
                body,
                collect,
                pending: Some((inner, parts, signer)),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<BufferedBody>>,
    S::Error: Into<tower::BoxError>,
    B: Body,
    B::Error: Into<tower::BoxError>,
{
    type Output = Result<S::Response, tower::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| SignError::new(SignErrorKind::InvalidRequest));
                    return Poll::Ready(Err(e.into()));
                }
                KindProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
                KindProj::Collect {
                    body,
                    collect,
                    pending,
                } => {
                    let outcome = ready!(collect.poll_body(body, cx));
                    let Some((mut inner, mut parts, signer)) = pending.take() else {
                        unreachable!("pending state is present until the body is in")
                    };
                    match outcome {
                        Err(CollectError::TooLarge) => Kind::Failed {
                            error: Some(SignError::new(SignErrorKind::BodyTooLarge)),
                        },
                        Err(CollectError::Body(e)) => Kind::Failed {
                            error: Some(SignError::with_source(SignErrorKind::Body, e)),
                        },
                        Ok(()) => {
                            let (bytes, hasher) = collect.finish();
                            let digest = hasher
                                .filter(|_| !bytes.is_empty() || signer.always_digest)
                                .map(|h| h.header_value());
                            match signer.sign(&mut parts, digest) {
                                Err(e) => Kind::Failed { error: Some(e) },
                                Ok(()) => {
                                    // `inner` was made ready by `poll_ready` (swapped out in `call`).
                                    let req = Request::from_parts(parts, BufferedBody::new(bytes));
                                    Kind::Inner {
                                        fut: inner.call(req),
                                    }
                                }
                            }
                        }
                    }
                }
            };
            this.kind.set(next);
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<BufferedBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
