//! RFC 9530 `Content-Digest`: compute and check `sha-256` / `sha-512` digests of a body.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::HeaderValue;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::error::{SignatureError, SignatureErrorKind};

/// The most `Content-Digest` header bytes parsed.
const MAX_DIGEST_HEADER_LEN: usize = 4096;

/// A `Content-Digest` algorithm (the "Active" ones of RFC 9530 §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha-256`.
    #[default]
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    /// The dictionary key, e.g. `"sha-256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
        }
    }

    const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// The `Content-Digest` value for `body`, e.g. `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`.
pub fn content_digest(alg: DigestAlgorithm, body: &[u8]) -> HeaderValue {
    let mut h = Hasher::new(alg);
    h.update(body);
    h.header_value()
}

/// Checks a `Content-Digest` field value against `body`.
///
/// Every `sha-256`/`sha-512` member must match; other algorithms are ignored, and at least one
/// accepted algorithm must be present.
///
/// # Errors
///
/// [`SignatureErrorKind::MalformedDigest`], [`SignatureErrorKind::UnsupportedDigest`] or
/// [`SignatureErrorKind::DigestMismatch`].
pub fn verify_content_digest(value: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    verify_content_digest_parsed(&ExpectedDigests::parse(value)?, body)
}

/// Checks every expected digest against `body`.
pub(crate) fn verify_content_digest_parsed(
    expected: &ExpectedDigests,
    body: &[u8],
) -> Result<(), SignatureError> {
    for e in expected.iter() {
        let mut h = Hasher::new(e.alg);
        h.update(body);
        e.check(&h.finish())?;
    }
    Ok(())
}

/// One expected digest from a `Content-Digest` header.
#[derive(Clone, Debug)]
pub(crate) struct Expected {
    pub(crate) alg: DigestAlgorithm,
    value: super::sf::ByteSeq,
}

impl Expected {
    pub(crate) fn check(&self, actual: &[u8]) -> Result<(), SignatureError> {
        if bool::from(self.value.as_slice().ct_eq(actual)) {
            Ok(())
        } else {
            Err(SignatureError::new(SignatureErrorKind::DigestMismatch))
        }
    }
}

/// The accepted digests of a `Content-Digest` header (at least one), in header order. A
/// dictionary has no duplicate keys, so there are at most two: `sha-256` and `sha-512`.
#[derive(Clone, Debug)]
pub(crate) struct ExpectedDigests {
    first: Expected,
    second: Option<Expected>,
}

impl ExpectedDigests {
    pub(crate) fn parse(value: &[u8]) -> Result<Self, SignatureError> {
        let malformed = || SignatureError::new(SignatureErrorKind::MalformedDigest);
        if value.len() > MAX_DIGEST_HEADER_LEN {
            return Err(malformed());
        }
        let dict = super::sf::parse_dictionary(value).map_err(|_| malformed())?;
        let (mut first, mut second) = (None, None);
        for (name, member) in dict.members {
            let alg = match name {
                "sha-256" => DigestAlgorithm::Sha256,
                "sha-512" => DigestAlgorithm::Sha512,
                _ => continue,
            };
            let super::sf::Member::Item(super::sf::Item {
                bare: super::sf::Bare::Bytes(bytes),
                ..
            }) = member
            else {
                return Err(malformed());
            };
            if bytes.len() != alg.output_len() {
                return Err(SignatureError::new(SignatureErrorKind::DigestMismatch));
            }
            let e = Expected { alg, value: bytes };
            if first.is_none() {
                first = Some(e);
            } else {
                second = Some(e);
            }
        }
        match first {
            Some(first) => Ok(Self { first, second }),
            None => Err(SignatureError::new(SignatureErrorKind::UnsupportedDigest)),
        }
    }

    /// Every expected digest, in header order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Expected> {
        std::iter::once(&self.first).chain(self.second.as_ref())
    }

    /// The one digest to compute while the body streams in: `sha-256` when offered.
    pub(crate) fn primary(&self) -> &Expected {
        self.iter()
            .find(|e| e.alg == DigestAlgorithm::Sha256)
            .unwrap_or(&self.first)
    }
}

/// A finished digest, without a heap allocation.
pub(crate) struct DigestOutput {
    buf: [u8; 64],
    len: usize,
}

impl std::ops::Deref for DigestOutput {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// An incremental digest of a body.
///
/// The SHA-512 state is boxed: it is twice the size of SHA-256's, and this value lives in the
/// response futures, which are moved several times per request whatever the algorithm.
#[derive(Clone, Debug)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    pub(crate) fn new(alg: DigestAlgorithm) -> Self {
        match alg {
            DigestAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(Box::new(Sha512::new())),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn alg(&self) -> DigestAlgorithm {
        match self {
            Self::Sha256(_) => DigestAlgorithm::Sha256,
            Self::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    pub(crate) fn finish(self) -> DigestOutput {
        let mut out = DigestOutput {
            buf: [0; 64],
            len: 0,
        };
        match self {
            Self::Sha256(h) => {
                out.buf[..32].copy_from_slice(&h.finalize());
                out.len = 32;
            }
            Self::Sha512(h) => {
                out.buf.copy_from_slice(&(*h).finalize());
                out.len = 64;
            }
        }
        out
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        let alg = self.alg();
        let digest = self.finish();
        let mut s = String::with_capacity(12 + 4 * digest.len().div_ceil(3));
        s.push_str(alg.as_str());
        s.push_str("=:");
        STANDARD.encode_string(&digest[..], &mut s);
        s.push(':');
        // Only ASCII from a fixed prefix and base64: always a valid header value.
        HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"hello": "world"}"#;
    const SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    const SHA512: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

    #[test]
    fn rfc9530_appendix_d_vectors() {
        assert_eq!(content_digest(DigestAlgorithm::Sha256, BODY), SHA256);
        assert_eq!(content_digest(DigestAlgorithm::Sha512, BODY), SHA512);
        verify_content_digest(SHA256.as_bytes(), BODY).unwrap();
        verify_content_digest(SHA512.as_bytes(), BODY).unwrap();
        let both = format!("{SHA256}, {SHA512}, md5=:AAAA:");
        verify_content_digest(both.as_bytes(), BODY).unwrap();
    }

    #[test]
    fn mismatch_malformed_and_unsupported() {
        let kind = |v: &str, b: &[u8]| verify_content_digest(v.as_bytes(), b).unwrap_err().kind();
        assert_eq!(
            kind(SHA256, b"{\"hello\": \"World\"}"),
            SignatureErrorKind::DigestMismatch
        );
        assert_eq!(
            kind("sha-256=:AAAA:", BODY),
            SignatureErrorKind::DigestMismatch
        );
        assert_eq!(
            kind("sha-256=abc", BODY),
            SignatureErrorKind::MalformedDigest
        );
        assert_eq!(
            kind("sha-256=:%%%:", BODY),
            SignatureErrorKind::MalformedDigest
        );
        assert_eq!(
            kind("md5=:AAAA:", BODY),
            SignatureErrorKind::UnsupportedDigest
        );
        assert_eq!(kind("", BODY), SignatureErrorKind::UnsupportedDigest);
    }
}
