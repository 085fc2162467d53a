//! The service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use super::{CspNonce, ResponseFuture, layer::Plan};
use crate::net::{Scheme, peer_addr, resolve};

/// The service of [`SecurityHeadersLayer`](super::SecurityHeadersLayer): adds the precomputed
/// security headers to every response of `S`.
pub struct SetSecurityHeaders<S> {
    inner: S,
    plan: Arc<Plan>,
}

impl<S> SetSecurityHeaders<S> {
    pub(crate) fn from_plan(inner: S, plan: Arc<Plan>) -> Self {
        Self { inner, plan }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for SetSecurityHeaders<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            plan: self.plan.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SetSecurityHeaders<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetSecurityHeaders")
            .field("inner", &self.inner)
            .field("plan", &self.plan)
            .finish()
    }
}

/// Whether the request came over HTTPS: a [`Scheme`] extension from the TLS acceptor, or a
/// trusted proxy's `Forwarded`/`X-Forwarded-Proto`. Not the request target's scheme (an
/// absolute-form `https://` target on a plain connection is the client's claim).
pub(crate) fn is_https<B>(req: &Request<B>, plan: &Plan) -> bool {
    // The connection's own word is final (as for the HTTPS redirect).
    if let Some(&scheme) = req.extensions().get::<Scheme>() {
        return scheme == Scheme::Https;
    }
    if plan.trusted_proxies.is_empty() {
        return false;
    }
    let peer = peer_addr(req.extensions()).map(|addr| addr.ip());
    resolve(req.headers(), peer, &plan.trusted_proxies).scheme == Some(Scheme::Https)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetSecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let https = self.plan.needs_scheme() && is_https(&req, &self.plan);
        let nonce = if self.plan.nonce {
            let nonce = CspNonce::generate();
            req.extensions_mut().insert(nonce);
            Some(nonce)
        } else {
            None
        };
        ResponseFuture::new(self.inner.call(req), self.plan.clone(), https, nonce)
    }
}
