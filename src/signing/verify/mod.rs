//! The server side: [`VerifySignatureLayer`] and its policy. See [`crate::signing`].

mod future;
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub use layer::VerifySignatureLayer;
pub(crate) use layer::VerifyShared;
pub use policy::{DEFAULT_BODY_LIMIT, NonceRequirement, VerifiedSignature, VerifyPolicy};
pub use service::VerifySignature;
