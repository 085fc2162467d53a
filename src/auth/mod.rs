//! Request authentication.
//!
//! * [`api_key`]: API keys in `Authorization: Bearer` or a header of your choice, stored as
//!   SHA-256 hashes, each standing for a [`Principal`](api_key::Principal) with scopes and an
//!   expiry.

pub mod api_key;
