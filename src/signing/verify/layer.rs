//! [`VerifySignatureLayer`]: configuration shared by every clone of the service.

use std::{fmt, sync::Arc};

use tower::Layer;

use super::{
    policy::{Verifier, VerifyPolicy},
    service::VerifySignature,
};
use crate::{
    problem::DefaultRejection,
    signing::{
        clock::{Clock, SharedClock},
        key::KeyRing,
        replay::{MemoryReplayStore, ReplayStore},
    },
};

/// What every clone of the layer and its services shares: the RFC 9421 core the
/// [gate](crate::signing::gate::begin) runs (key ring and policy, replay store, clock).
pub(crate) struct VerifyShared<St> {
    pub(crate) verifier: Verifier,
    pub(crate) store: Arc<St>,
    pub(crate) clock: SharedClock,
}

/// Verifies RFC 9421 `hmac-sha256` signatures on requests before the inner service sees them.
///
/// See the [module docs](crate::signing) for what is checked. `R` makes the rejection response
/// ([`DefaultRejection`]: problem+json), `St` is the replay store ([`MemoryReplayStore`]).
///
/// It buffers the body before calling the inner service: put a
/// [`RequestTimeoutLayer`](crate::stack::RequestTimeoutLayer) outside it (and a
/// [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer) outside that), so that a body the
/// client stops sending is answered (408) at the deadline instead of holding the connection.
/// [`ServerStack`](crate::stack::ServerStack) composes them so.
///
/// # Refusals while the body is still coming (HTTP/2)
///
/// A 401 for missing or invalid signature headers (or a 413 by the declared length) is decided before anything reads the request body. If the body is not finished and
/// declares at most 64 KiB, the refusal first reads it to its end (at most 64 KiB, 1,024
/// frames and one second), throwing each chunk away, and answers after: the HTTP/2 stream then
/// ends cleanly instead of being reset while the client is still sending (which some clients
/// report as an error instead of the answer, and which, with the DATA the client had in
/// flight, uses up the connection's budget of resets in hyper/h2). A larger body is not read:
/// the answer goes at once. A request without a body pays nothing, and a client sending
/// `Expect: 100-continue` is answered at once. The wait needs a tokio runtime (without one,
/// the answer goes at once).
pub struct VerifySignatureLayer<R = DefaultRejection, St = MemoryReplayStore> {
    pub(crate) shared: Arc<VerifyShared<St>>,
    pub(crate) rejection: R,
}

impl VerifySignatureLayer {
    /// Verifies with the keys of `ring` and the default [`VerifyPolicy`], an in-memory replay
    /// store and the system clock.
    pub fn new(ring: KeyRing) -> Self {
        Self::with_policy(ring, VerifyPolicy::new())
    }

    /// Verifies with the keys of `ring` and `policy`.
    pub fn with_policy(ring: KeyRing, policy: VerifyPolicy) -> Self {
        Self {
            shared: Arc::new(VerifyShared {
                verifier: Verifier { ring, policy },
                store: Arc::new(MemoryReplayStore::new()),
                clock: SharedClock::default(),
            }),
            rejection: DefaultRejection,
        }
    }
}

impl<R, St> VerifySignatureLayer<R, St> {
    fn rebuild<St2>(self, store: Arc<St2>, clock: SharedClock) -> VerifySignatureLayer<R, St2> {
        let (ring, policy) = (
            self.shared.verifier.ring.clone(),
            self.shared.verifier.policy.clone(),
        );
        VerifySignatureLayer {
            shared: Arc::new(VerifyShared {
                verifier: Verifier { ring, policy },
                store,
                clock,
            }),
            rejection: self.rejection,
        }
    }

    /// Uses `store` for nonces (e.g. a Redis store shared by every instance).
    #[must_use]
    pub fn with_replay_store<St2: ReplayStore>(self, store: St2) -> VerifySignatureLayer<R, St2> {
        let clock = self.shared.clock.clone();
        self.rebuild(Arc::new(store), clock)
    }

    /// Reads time from `clock` (for tests: [`TokioClock`](crate::signing::TokioClock)).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let store = self.shared.store.clone();
        self.rebuild(store, SharedClock::new(clock))
    }

    /// Answers rejections with `rejection` instead of problem+json.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> VerifySignatureLayer<R2, St> {
        VerifySignatureLayer {
            shared: self.shared,
            rejection,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &VerifyPolicy {
        &self.shared.verifier.policy
    }

    /// The replay store the nonces go to.
    pub fn replay_store(&self) -> &St {
        &self.shared.store
    }

    /// The core [`gate::begin`](crate::signing::gate::begin) runs (for the stack engine).
    pub(crate) fn gate(&self) -> &Arc<VerifyShared<St>> {
        &self.shared
    }

    /// What answers the rejections (for the stack engine).
    #[cfg_attr(not(test), allow(dead_code, reason = "the gate's tests call it"))]
    pub(crate) fn rejection(&self) -> &R {
        &self.rejection
    }

    /// The same layer with its replay store made from the current one.
    pub(crate) fn map_replay_store<St2>(
        self,
        f: impl FnOnce(Arc<St>) -> St2,
    ) -> VerifySignatureLayer<R, St2> {
        let (store, clock) = (self.shared.store.clone(), self.shared.clock.clone());
        self.rebuild(Arc::new(f(store)), clock)
    }
}

impl<R: Clone, St> Clone for VerifySignatureLayer<R, St> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<R, St> fmt::Debug for VerifySignatureLayer<R, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySignatureLayer")
            .field("ring", &self.shared.verifier.ring)
            .field("policy", &self.shared.verifier.policy)
            .finish_non_exhaustive()
    }
}

impl<S, R: Clone, St> Layer<S> for VerifySignatureLayer<R, St> {
    type Service = VerifySignature<S, R, St>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifySignature {
            inner,
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}
