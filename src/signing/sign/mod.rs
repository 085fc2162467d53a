//! The client side: [`SignRequestLayer`]. See [`crate::signing`].

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::SignRequestLayer;
pub use service::SignRequest;
