//! [`VerifySignature`]: the service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::{
    future::{Finish, GateError, Pending, ResponseFuture, reject},
    layer::Shared,
};
use crate::{
    problem::MakeRejection,
    signing::{
        body::{BufferedBody, Collect},
        digest::Hasher,
        error::{SignatureError, SignatureErrorKind},
        replay::ReplayStore,
    },
};

/// The service made by [`VerifySignatureLayer`](super::VerifySignatureLayer).
pub struct VerifySignature<S, R, St> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<St>>,
    pub(crate) rejection: R,
}

impl<S: Clone, R: Clone, St> Clone for VerifySignature<S, R, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, R, St> fmt::Debug for VerifySignature<S, R, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySignature")
            .field("inner", &self.inner)
            .field("policy", &self.shared.verifier.policy)
            .finish_non_exhaustive()
    }
}

impl<S, R, St, B, ResBody> Service<Request<B>> for VerifySignature<S, R, St>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<tower::BoxError>,
    R: MakeRejection<ResBody> + Clone,
    St: ReplayStore,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let shared = &*self.shared;
        let now = shared.clock.now();
        let hint = body.size_hint();
        let has_body = !body.is_end_stream() && hint.upper() != Some(0);
        let checked = match shared.verifier.check(
            &parts.method,
            crate::net::original_uri_of(&parts.uri, &parts.extensions),
            &parts.headers,
            has_body,
            now,
        ) {
            Ok(c) => c,
            Err(e) => {
                let res = reject(&self.rejection, &parts, GateError::Signature(e));
                return ResponseFuture::rejected(res, &parts, body);
            }
        };
        let limit = shared.verifier.policy.body_limit;
        let key_id = checked.verified_key_id();
        if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
            let e = SignatureError::new(SignatureErrorKind::BodyTooLarge).with_key_id(key_id);
            let res = reject(&self.rejection, &parts, GateError::Signature(e));
            return ResponseFuture::rejected(res, &parts, body);
        }
        let hasher = checked
            .digest
            .as_ref()
            .map(|d| Hasher::new(d.primary().alg));
        parts.extensions.insert(checked.verified);
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::collect(
            body,
            Collect::new(limit, hasher),
            Pending {
                inner,
                parts,
                rejection: self.rejection.clone(),
                finish: Finish::Digest(checked.digest),
                replay: checked.replay,
                store: shared.store.clone(),
                key_id: Some(key_id),
            },
        )
    }
}
