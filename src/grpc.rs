//! gRPC-native answers: every rejection of a server layer, for a gRPC request, is a gRPC
//! trailers-only response instead of a problem+json document.
//!
//! A request is gRPC when its `content-type` is `application/grpc`, or one of its
//! `application/grpc+proto` / `application/grpc+json` (any `+suffix`, or `;parameters`) forms
//! ([`is_grpc`]: one header lookup, no allocation). `application/grpc-web` is not: its
//! trailers travel in the body, which a trailers-only answer cannot give.
//!
//! Each layer marks the [`Problem`](crate::problem::Problem) it refuses with while it still has
//! the request head ([`Problem::grpc`](crate::problem::Problem::grpc) tells a custom
//! [`MakeRejection`](crate::problem::MakeRejection) which kind it answers);
//! [`DefaultRejection`](crate::problem::DefaultRejection) then renders HTTP 200,
//! `content-type: application/grpc`, `grpc-status`, a percent-encoded `grpc-message` (the
//! problem's public detail, never internals), `x-request-id`, and the protocol headers of the
//! problem (`RateLimit`, `Retry-After`, plus `retry-pushback-ms` from `Retry-After`), with an
//! empty body: the status travels in the one HEADERS frame that ends the stream.
//!
//! | refusal | HTTP (non-gRPC) | gRPC status |
//! | --- | --- | --- |
//! | API key, signature, webhook | 401 | `UNAUTHENTICATED` (16) |
//! | scope (valid credentials, no permission) | 403 | `PERMISSION_DENIED` (7) |
//! | rate limit | 429 | `RESOURCE_EXHAUSTED` (8), `retry-pushback-ms` |
//! | body too large | 413 | `RESOURCE_EXHAUSTED` (8) |
//! | breaker open, store down | 503 | `UNAVAILABLE` (14) |
//! | request timeout | 503 | `DEADLINE_EXCEEDED` (4) |
//! | body stalled past the deadline | 408 | `DEADLINE_EXCEEDED` (4) |
//! | panic, misconfiguration | 500 | `INTERNAL` (13) |
//! | HTTPS required | 403 | `FAILED_PRECONDITION` (9) |
//! | misdirected host | 421 | `FAILED_PRECONDITION` (9) |
//! | malformed request | 400 | `INVALID_ARGUMENT` (3) |
//!
//! HTTPS required is `FAILED_PRECONDITION`, not `UNAVAILABLE`: retrying the same plain-text
//! call can never succeed (gRPC clients retry `UNAVAILABLE` on their own), the client must
//! change how it connects first.
//!
//! ```
//! use battlement::{grpc, problem::{Problem, ProblemType}};
//! use bytes::Bytes;
//! use http::{HeaderMap, HeaderValue, Response, header};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
//! assert!(grpc::is_grpc(&headers));
//! let res: Response<Bytes> = Problem::new(ProblemType::TOO_MANY_REQUESTS)
//!     .with_detail("Slow down 100%")
//!     .for_request(&headers)
//!     .into_response();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["grpc-status"], "8");
//! assert_eq!(res.headers()["grpc-message"], "Slow down 100%25");
//! ```

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::problem::ProblemType;

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer).
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The client's deadline, `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The server's hint of how long to wait before retrying (gRPC's retry design, A6).
pub const RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("retry-pushback-ms");
/// The media type of a gRPC response.
pub const CONTENT_TYPE: &str = "application/grpc";

/// Whether the request (or response) headers say gRPC: `content-type` is `application/grpc`
/// or `application/grpc+...` / `application/grpc;...`. One header lookup, no allocation.
#[inline]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

fn is_grpc_content_type(v: &[u8]) -> bool {
    const P: &[u8] = b"application/grpc";
    v.len() >= P.len()
        && v[..P.len()].eq_ignore_ascii_case(P)
        && matches!(v.get(P.len()), None | Some(b'+' | b';'))
}

/// A gRPC status code (the ones battlement answers or reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// 0
    Ok,
    /// 3: the client's request is malformed.
    InvalidArgument,
    /// 4: the deadline passed.
    DeadlineExceeded,
    /// 7: valid credentials without the needed permission.
    PermissionDenied,
    /// 8: a rate limit or a size limit.
    ResourceExhausted,
    /// 9: the call cannot succeed as made (plain text where TLS is required).
    FailedPrecondition,
    /// 13: the server failed.
    Internal,
    /// 14: try again later (retryable).
    Unavailable,
    /// 16: missing or invalid credentials.
    Unauthenticated,
}

impl Code {
    /// The numeric code.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::InvalidArgument => 3,
            Self::DeadlineExceeded => 4,
            Self::PermissionDenied => 7,
            Self::ResourceExhausted => 8,
            Self::FailedPrecondition => 9,
            Self::Internal => 13,
            Self::Unavailable => 14,
            Self::Unauthenticated => 16,
        }
    }

    const fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Ok => "0",
            Self::InvalidArgument => "3",
            Self::DeadlineExceeded => "4",
            Self::PermissionDenied => "7",
            Self::ResourceExhausted => "8",
            Self::FailedPrecondition => "9",
            Self::Internal => "13",
            Self::Unavailable => "14",
            Self::Unauthenticated => "16",
        })
    }

    /// The code a problem type answers a gRPC client with (the table in the
    /// [module docs](self)); a type of your own maps by its HTTP status, as gRPC's own
    /// HTTP-to-gRPC mapping does.
    pub fn for_problem(kind: ProblemType) -> Self {
        match kind.slug() {
            "unauthorized" => Self::Unauthenticated,
            "forbidden" => Self::PermissionDenied,
            "too-many-requests" | "payload-too-large" => Self::ResourceExhausted,
            "service-unavailable" => Self::Unavailable,
            "request-timeout" => Self::DeadlineExceeded,
            "internal-error" => Self::Internal,
            "https-required" | "misdirected-request" => Self::FailedPrecondition,
            "bad-request" => Self::InvalidArgument,
            _ => match kind.status().as_u16() {
                400 => Self::InvalidArgument,
                401 => Self::Unauthenticated,
                403 => Self::PermissionDenied,
                408 | 504 => Self::DeadlineExceeded,
                413 | 429 => Self::ResourceExhausted,
                502..=503 => Self::Unavailable,
                _ => Self::Internal,
            },
        }
    }
}

/// The `grpc-status` of a response, from its headers (a trailers-only answer) or, given, its
/// trailers. `None` when neither says (not a gRPC answer, or its trailers are still to come).
pub fn status_of(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<u32> {
    let v = headers
        .get(&GRPC_STATUS)
        .or_else(|| trailers.and_then(|t| t.get(&GRPC_STATUS)))?;
    std::str::from_utf8(v.as_bytes()).ok()?.parse().ok()
}

/// Whether a gRPC status code is the server's failure (counted by a circuit breaker, worth a
/// retry elsewhere): `UNAVAILABLE` (14), `INTERNAL` (13), `UNKNOWN` (2), `DEADLINE_EXCEEDED` (4),
/// `DATA_LOSS` (15). The others (`INVALID_ARGUMENT`, `NOT_FOUND`, `UNAUTHENTICATED`, ...) are
/// the client's.
pub const fn is_server_failure(code: u32) -> bool {
    matches!(code, 2 | 4 | 13 | 14 | 15)
}

/// Parses a `grpc-timeout` value (at most 8 digits and a unit of `H`, `M`, `S`, `m`, `u` or
/// `n`, as the gRPC over HTTP/2 spec says); `None` when malformed.
pub fn parse_timeout(value: &HeaderValue) -> Option<Duration> {
    let b = value.as_bytes();
    let (digits, unit) = b.split_at(b.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit[0] {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `d`: the coarsest unit that says it exactly within the spec's
/// 8 digits, else the finest that fits, rounded up so the server never sees a shorter
/// deadline than the client's.
pub fn encode_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    // The coarsest unit that says it exactly ("250m", not "250000u"), else the finest that
    // fits, rounded up.
    let exact = units
        .iter()
        .rev()
        .find(|(per, _)| nanos.is_multiple_of(*per) && nanos / per <= MAX);
    let fitting = units.iter().find(|(per, _)| nanos.div_ceil(*per) <= MAX);
    match exact.or(fitting) {
        Some(&(per, unit)) => HeaderValue::from_str(&format!("{}{unit}", nanos.div_ceil(per)))
            // Digits and an ASCII letter: always a valid header value.
            .unwrap_or(HeaderValue::from_static("99999999H")),
        None => HeaderValue::from_static("99999999H"),
    }
}

/// Percent-encodes a `grpc-message` as the spec says: bytes outside printable ASCII
/// (`0x20..=0x7E`) and `%` become `%XX` of their UTF-8 bytes.
pub fn encode_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    // Printable ASCII only: always a valid header value.
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

/// The headers of a trailers-only answer: `grpc-status` and `grpc-message`.
pub(crate) fn status_headers(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(GRPC_STATUS, code.header_value());
    headers.insert(GRPC_MESSAGE, encode_message(message));
}

/// `retry-pushback-ms` from a `Retry-After` in seconds (the rate limit's wait).
pub(crate) fn pushback_from(headers: &mut HeaderMap) {
    let ms = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    if let Some(ms) = ms {
        headers.insert(RETRY_PUSHBACK_MS, HeaderValue::from(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_grpc_forms_only() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC;charset=utf-8",
        ] {
            assert!(is_grpc_content_type(ct.as_bytes()), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc_content_type(ct.as_bytes()), "{ct}");
        }
    }

    #[test]
    fn timeouts_round_trip() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_timeout(&v("100m")), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(&v("2S")), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(&v("1H")), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(&v("123456789m")), None);
        assert_eq!(parse_timeout(&v("m")), None);
        assert_eq!(parse_timeout(&v("")), None);
        assert_eq!(parse_timeout(&v("10x")), None);
        assert_eq!(parse_timeout(&v("-1S")), None);
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(30),
            Duration::from_nanos(7),
        ] {
            assert_eq!(parse_timeout(&encode_timeout(d)), Some(d));
        }
        assert_eq!(encode_timeout(Duration::from_millis(1500)), "1500m");
        assert_eq!(encode_timeout(Duration::from_secs(120)), "2M");
        // 1.234567891 s does not fit in nanoseconds' 8 digits: rounded up, never down.
        assert_eq!(
            encode_timeout(Duration::from_nanos(1_234_567_891)),
            "1234568u"
        );
        let long = encode_timeout(Duration::from_secs(86_400 * 365));
        assert!(parse_timeout(&long).unwrap() >= Duration::from_secs(86_400 * 365));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("a b%c\né"), "a b%25c%0A%C3%A9");
    }

    #[test]
    fn mapping() {
        assert_eq!(
            Code::for_problem(ProblemType::UNAUTHORIZED),
            Code::Unauthenticated
        );
        assert_eq!(
            Code::for_problem(ProblemType::HTTPS_REQUIRED),
            Code::FailedPrecondition
        );
        assert_eq!(
            Code::for_problem(ProblemType::FORBIDDEN),
            Code::PermissionDenied
        );
        assert!(is_server_failure(14) && !is_server_failure(3));
    }
}

/// Sends a gRPC call's per-attempt timeout to the server as `grpc-timeout` (kept when the
/// caller set a shorter one), so the server's deadline is the client's: the
/// [`ClientStack`](crate::stack::ClientStack) puts it around each attempt with its timeout.
/// Requests that are not gRPC pass untouched (one header lookup).
///
/// ```
/// use std::time::Duration;
///
/// use battlement::grpc::SetGrpcTimeoutLayer;
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = SetGrpcTimeoutLayer::new(Duration::from_millis(250)).layer(service_fn(
///     |req: Request<()>| async move {
///         let sent = req.headers().get("grpc-timeout").cloned();
///         Ok::<_, std::convert::Infallible>(Response::new(sent))
///     },
/// ));
/// let req = Request::post("/pkg.Svc/Call")
///     .header("content-type", "application/grpc")
///     .body(())
///     .unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.body().as_ref().unwrap(), "250m");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SetGrpcTimeoutLayer {
    // `None`: no timeout to send (the client stack without a per-attempt timeout).
    timeout: Option<(Duration, HeaderValue)>,
}

impl SetGrpcTimeoutLayer {
    /// Sends `timeout` as `grpc-timeout` on gRPC requests.
    pub fn new(timeout: Duration) -> Self {
        Self::maybe(Some(timeout))
    }

    pub(crate) fn maybe(timeout: Option<Duration>) -> Self {
        Self {
            timeout: timeout.map(|t| (t, encode_timeout(t))),
        }
    }
}

impl<S> tower::Layer<S> for SetGrpcTimeoutLayer {
    type Service = SetGrpcTimeout<S>;

    fn layer(&self, inner: S) -> SetGrpcTimeout<S> {
        SetGrpcTimeout {
            inner,
            timeout: self.timeout.clone(),
        }
    }
}

/// The service of [`SetGrpcTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct SetGrpcTimeout<S> {
    inner: S,
    timeout: Option<(Duration, HeaderValue)>,
}

impl<S, B> tower::Service<http::Request<B>> for SetGrpcTimeout<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        if let Some((timeout, value)) = &self.timeout
            && is_grpc(req.headers())
        {
            let shorter = req
                .headers()
                .get(&GRPC_TIMEOUT)
                .and_then(parse_timeout)
                .is_some_and(|t| t <= *timeout);
            if !shorter {
                // A clone of a shared value: no allocation.
                req.headers_mut().insert(GRPC_TIMEOUT, value.clone());
            }
        }
        self.inner.call(req)
    }
}
