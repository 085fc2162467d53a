//! The server side: [`VerifySignatureLayer`] and its policy. See [`crate::signing`].

mod future;
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub(crate) use layer::VerifyShared;
pub use layer::VerifySignatureLayer;
pub use policy::{DEFAULT_BODY_LIMIT, NonceRequirement, VerifiedSignature, VerifyPolicy};
pub use service::VerifySignature;
