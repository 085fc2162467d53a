//! Request authentication by signature: RFC 9421 HTTP Message Signatures with `hmac-sha256`,
//! RFC 9530 `Content-Digest`, and [Standard Webhooks](webhooks).
//!
//! TODO docs
#![allow(missing_docs)]

mod base;
mod body;
mod clock;
mod digest;
mod error;
mod key;
mod parse;
mod replay;
mod sf;
pub mod sign;
pub mod verify;
pub mod webhooks;

pub use base::signature_base;
pub use body::BufferedBody;
pub use clock::{Clock, SystemClock, TokioClock};
pub use digest::{DigestAlgorithm, content_digest, verify_content_digest};
pub use error::{SignError, SignErrorKind, SignatureError, SignatureErrorKind};
pub use key::{
    Algorithm, DEFAULT_GRACE_PERIOD, Key, KeyRing, MAX_KEYS, MAX_SECRET_LEN, MIN_SECRET_LEN,
};
pub use parse::{
    Component, MAX_COMPONENTS, MAX_FIELD_LEN, MAX_SIGNATURES, SignatureInput, parse_signature,
    parse_signature_input,
};
pub use replay::{
    DEFAULT_REPLAY_CAPACITY, MemoryReplayStore, ReplayCheck, ReplayStore, ReplayStoreError,
};
pub use sign::SignRequestLayer;
pub use verify::{NonceRequirement, VerifiedSignature, VerifyPolicy, VerifySignatureLayer};
