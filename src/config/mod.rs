//! Configuration primitives shared by the [`stack`](crate::stack) config and any other serde
//! config of this crate: human durations, byte sizes, secrets referenced from the environment
//! or a file, and `BATTLEMENT__SECTION__KEY` environment overrides.
//!
//! ```
//! use battlement::config::{ByteSize, HumanDuration, SecretSource};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Upstream {
//!     timeout: HumanDuration,
//!     max_body: ByteSize,
//!     token: SecretSource,
//! }
//!
//! let up: Upstream = toml::from_str(r#"
//!     timeout = "1m30s"
//!     max_body = "512KiB"
//!     token = { env = "UPSTREAM_TOKEN" }
//! "#).unwrap();
//! assert_eq!(up.timeout.get().as_secs(), 90);
//! assert_eq!(up.max_body.get(), 512 * 1024);
//! assert!(!up.token.is_inline());
//! assert_eq!(format!("{:?}", up.token), r#"SecretSource::Env("UPSTREAM_TOKEN")"#);
//! ```
//!
//! # Formats
//!
//! * Durations: a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`), several in a row
//!   (`1h30m`). A bare number is refused: `30` could mean seconds or milliseconds.
//! * Sizes: a number and a unit: `B`, decimal `kB`/`KB`, `MB`, `GB`, binary `KiB`, `MiB`,
//!   `GiB`; a bare integer (TOML number or string) is bytes.
//! * Secrets: `{ env = "VAR" }` (read from the environment at startup), `{ file = "/path" }`
//!   (read from a file, such as a mounted Kubernetes or Docker secret, trailing newline
//!   removed), or an inline string, accepted for development only and flagged by
//!   [`audit`](crate::stack::audit). Resolved secrets are wiped from memory on drop and never
//!   printed.
//!
//! # Environment overrides
//!
//! [`apply_env_overrides`] (feature `config`) changes a parsed TOML table from environment
//! variables named `PREFIX__SECTION__KEY`: a double underscore separates the levels, the
//! segments are lowercased, single underscores stay (`BATTLEMENT__RATE_LIMIT__PER_IP__BURST=20`
//! sets `rate_limit.per_ip.burst`). The value is read as a TOML value (`20`, `true`,
//! `["a", "b"]`, `"1MiB"`), or as a plain string when it is not one (`1MiB`).

mod duration;
#[cfg(feature = "config")]
mod env;
mod secret;
mod size;

pub use duration::HumanDuration;
#[cfg(feature = "config")]
pub use env::{ENV_PREFIX, apply_env_overrides};
pub use secret::{Secret, SecretSource};
pub use size::ByteSize;
