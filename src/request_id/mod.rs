//! Request ids.

mod id;

pub use id::RequestId;
