//! RFC 9457 problem details: the one rejection response of every layer in this crate.
//!
//! ```
//! use axum::{Router, body::Body, routing::post};
//! use battlement::{body_limit::{BodyLimitLayer, PayloadTooLarge}, problem::Refused};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/upload", post(|body: String| async move { body }))
//!     .layer(BodyLimitLayer::new(8));
//!
//! let req = Request::post("/upload").header("content-length", "16").body(Body::from("0123456789abcdef"))?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! // The typed cause and the `Refused` marker ride in the response extensions...
//! assert_eq!(res.extensions().get::<PayloadTooLarge>().map(|p| p.limit), Some(8));
//! assert!(res.extensions().get::<Refused>().is_some());
//! // ...and the body is the problem document, whose `type` ends with a stable slug.
//! let body = axum::body::to_bytes(res.into_body(), 4096).await?;
//! let doc: serde_json::Value = serde_json::from_slice(&body)?;
//! assert!(doc["type"].as_str().unwrap().ends_with("#payload-too-large"));
//! assert_eq!(doc["status"], 413);
//! # Ok(())
//! # }
//! ```
//!
//! When a server-side layer of battlement refuses a request (a body too large, a missing
//! signature, a rate limit, an open circuit, ...) it never returns an `Err` that would make hyper
//! drop the connection: it answers with a [`Problem`] rendered as `application/problem+json`:
//!
//! ```json
//! {"type":"https://docs.rs/battlement/latest/battlement/problem/index.html#payload-too-large",
//!  "title":"Payload Too Large","status":413,
//!  "detail":"The request body is larger than this endpoint accepts.",
//!  "request_id":"0190b5d5-7a4e-7cc1-9c2a-1b8f3e8f9d11"}
//! ```
//!
//! * `type` is stable: match on it (or on [`Problem::slug`]), never on `title` or `detail`.
//! * `detail` says what the client can do about it and never names internals, keys or limits
//!   that should stay private.
//! * `request_id` is there when the request-id layer runs outside the rejecting layer.
//! * The typed cause of the rejection (for example `body_limit::PayloadTooLarge`) is inserted in
//!   the response extensions, so outer layers, tests and audit logs can read the precise reason.
//! * So is the marker [`Refused`], on every rejection a layer answers because of the request
//!   (its size, credentials, rate, a body the client stopped sending) or of its own state (an
//!   open circuit): the circuit breakers' [`DefaultClassifier`](crate::circuit_breaker::DefaultClassifier)
//!   does not count such responses, so clients cannot open a breaker for everyone. The 503 of a
//!   handler too slow for the request timeout, and the 500 of a panic, are the application's
//!   failures and carry no marker.
//!
//! # Replacing the response
//!
//! Every rejecting layer takes a [`MakeRejection`] through its `with_rejection` builder. A closure
//! `Fn(Problem) -> Response<B>` works:
//!
//! ```
//! use battlement::problem::{MakeRejection, Problem};
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//!
//! let plain_text = |problem: Problem| {
//!     let mut res = Response::new(Bytes::from(problem.title()));
//!     *res.status_mut() = problem.status();
//!     res
//! };
//! let res = plain_text.make_rejection(Problem::new(battlement::problem::ProblemType::PAYLOAD_TOO_LARGE));
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! ```
//!
//! Headers the protocol needs (`Retry-After`, `WWW-Authenticate`, ...) are carried by the
//! [`Problem`] in [`Problem::headers`]; the default renderer copies them and a replacement should
//! too.
//!
//! # Where the `type` URIs point
//!
//! A `type` is [`TYPE_BASE`] followed by the slug:
//! `https://docs.rs/battlement/latest/battlement/problem/index.html#<slug>`, the entry of the
//! list below (each item carries the anchor). That page exists once the crate is published on
//! docs.rs; until then the URI does not resolve. It is still a valid RFC 9457 `type`: an
//! identifier that clients compare, and that RFC 9457 §3.1.1 says they should not dereference
//! automatically. Until the crate is published:
//!
//! * Match on the `type` (or [`Problem::slug`], or the typed cause in the response
//!   extensions), never fetch it: it will not change when the page appears.
//! * To give your API's clients a page that resolves, host these docs (`cargo doc --no-deps
//!   -p battlement` renders this page at `battlement/problem/index.html`, anchors included),
//!   or answer with your own `type` URIs through a [`MakeRejection`], as below (the base is a
//!   constant of the crate: a configurable one is not there yet).
//!
//! ```
//! use battlement::problem::{Problem, ProblemType, TYPE_BASE};
//! use bytes::Bytes;
//! use http::Response;
//!
//! let own_types = |problem: Problem| {
//!     let json = String::from_utf8_lossy(&problem.to_json())
//!         .replacen(TYPE_BASE, "https://errors.example.com/", 1);
//!     let mut res = Response::new(Bytes::from(json));
//!     *res.status_mut() = problem.status();
//!     res.headers_mut().extend(problem.headers().clone()); // Retry-After, WWW-Authenticate, ...
//!     res.headers_mut().insert("content-type", battlement::problem::CONTENT_TYPE.parse().unwrap());
//!     res
//! };
//! // Every rejecting layer takes it: `BodyLimitLayer::new(1024).with_rejection(own_types)`.
//! let res = own_types(Problem::new(ProblemType::TOO_MANY_REQUESTS));
//! assert!(res.body().starts_with(b"{\"type\":\"https://errors.example.com/too-many-requests\""));
//! ```
//!
//! # Problem types
//!
//! Each type below is the anchor its `type` URI points to.
//!
//! * <a id="payload-too-large"></a>`payload-too-large` (413): the body is over the limit.
//! * <a id="https-required"></a>`https-required` (403): plain HTTP was refused and no redirect was
//!   possible (the host is not on the allow-list).
//! * <a id="misdirected-request"></a>`misdirected-request` (421): the `Host` is not one this
//!   server answers for.
//! * <a id="unauthorized"></a>`unauthorized` (401): missing or invalid credentials or signature.
//! * <a id="forbidden"></a>`forbidden` (403): valid credentials without the needed permission.
//! * <a id="too-many-requests"></a>`too-many-requests` (429): a rate limit was reached.
//! * <a id="request-timeout"></a>`request-timeout` (408): the request timeout passed while the
//!   request body was still on its way (the client stopped sending it); sent with
//!   `Connection: close` over HTTP/1.
//! * <a id="service-unavailable"></a>`service-unavailable` (503): a circuit breaker is open or
//!   the service sheds load.
//! * <a id="bad-request"></a>`bad-request` (400): a malformed request.
//! * <a id="internal-error"></a>`internal-error` (500): the server is misconfigured; the detail
//!   says nothing more (except the fix of a server started without the peer address, which is
//!   the same for everyone), the logs do.

use std::{borrow::Cow, fmt};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::{
    grpc::{self, Code},
    request_id::RequestId,
};

/// Where the `type` URIs of this crate's problems point.
pub const TYPE_BASE: &str = "https://docs.rs/battlement/latest/battlement/problem/index.html#";

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A stable problem type: status, slug (the end of the `type` URI) and title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProblemType {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
}

impl ProblemType {
    /// 400: a malformed request.
    pub const BAD_REQUEST: Self = Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad Request");
    /// 401: missing or invalid credentials or signature.
    pub const UNAUTHORIZED: Self =
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized");
    /// 403: valid credentials without the needed permission.
    pub const FORBIDDEN: Self = Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden");
    /// 403: plain HTTP refused and no redirect possible.
    pub const HTTPS_REQUIRED: Self =
        Self::new(StatusCode::FORBIDDEN, "https-required", "HTTPS Required");
    /// 408: the request body did not arrive within the request timeout.
    pub const REQUEST_TIMEOUT: Self = Self::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        "Request Timeout",
    );
    /// 413: the body is over the limit.
    pub const PAYLOAD_TOO_LARGE: Self = Self::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Payload Too Large",
    );
    /// 421: the `Host` is not one this server answers for.
    pub const MISDIRECTED_REQUEST: Self = Self::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected-request",
        "Misdirected Request",
    );
    /// 429: a rate limit was reached.
    pub const TOO_MANY_REQUESTS: Self = Self::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        "Too Many Requests",
    );
    /// 500: the server is misconfigured.
    pub const INTERNAL_ERROR: Self = Self::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal-error",
        "Internal Server Error",
    );
    /// 503: a circuit breaker is open or the service sheds load.
    pub const SERVICE_UNAVAILABLE: Self = Self::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
        "Service Unavailable",
    );

    /// A problem type of your own. `slug` becomes the end of the `type` URI.
    pub const fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Self {
        Self {
            status,
            slug,
            title,
        }
    }

    /// The HTTP status.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable slug, e.g. `"payload-too-large"`.
    pub const fn slug(&self) -> &'static str {
        self.slug
    }

    /// The human-readable title.
    pub const fn title(&self) -> &'static str {
        self.title
    }
}

/// An RFC 9457 problem: what a layer answers instead of calling the inner service.
#[derive(Clone)]
pub struct Problem {
    kind: ProblemType,
    detail: Cow<'static, str>,
    request_id: Option<RequestId>,
    headers: HeaderMap,
    // Set by the layer from the request head: answer in gRPC terms (see `crate::grpc`).
    grpc: bool,
    // A gRPC status other than the type's (the timeout's 503 is `DEADLINE_EXCEEDED`).
    grpc_code: Option<Code>,
}

impl Problem {
    /// A problem of the given type with the type's generic detail.
    pub fn new(kind: ProblemType) -> Self {
        Self {
            kind,
            detail: Cow::Borrowed(""),
            request_id: None,
            headers: HeaderMap::new(),
            grpc: false,
            grpc_code: None,
        }
    }

    /// Sets the `detail`. It is sent to the client: say what they can do, never internals.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Sets the request id reported in the body.
    #[must_use]
    pub fn with_request_id(mut self, id: Option<RequestId>) -> Self {
        self.request_id = id;
        self
    }

    /// Takes the request id from request extensions, if the request-id layer put one there.
    #[must_use]
    pub fn with_request_id_from(self, extensions: &http::Extensions) -> Self {
        let id = extensions.get::<RequestId>().cloned();
        self.with_request_id(id)
    }

    /// Adds a header the protocol needs on this rejection (`Retry-After`, `WWW-Authenticate`, ...).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Marks the problem as the answer to a gRPC request when `headers` (the request's) say
    /// so ([`grpc::is_grpc`]: one header lookup). Every layer of this crate does this with the
    /// request head; [`DefaultRejection`] then answers a gRPC trailers-only response.
    #[must_use]
    pub fn for_request(mut self, headers: &HeaderMap) -> Self {
        self.grpc = grpc::is_grpc(headers);
        self
    }

    /// Sets whether the problem answers a gRPC request.
    #[must_use]
    pub fn with_grpc(mut self, grpc: bool) -> Self {
        self.grpc = grpc;
        self
    }

    /// Whether the problem answers a gRPC request: a [`MakeRejection`] of your own should then
    /// answer in gRPC terms (see [`Problem::into_grpc_response`]).
    pub fn grpc(&self) -> bool {
        self.grpc
    }

    /// Answers gRPC clients with `code` instead of the type's (see [`grpc::Code::for_problem`]).
    #[must_use]
    pub fn with_grpc_code(mut self, code: Code) -> Self {
        self.grpc_code = Some(code);
        self
    }

    /// The gRPC status this problem answers a gRPC client with.
    pub fn grpc_code(&self) -> Code {
        self.grpc_code
            .unwrap_or_else(|| Code::for_problem(self.kind))
    }

    /// The problem type.
    pub fn problem_type(&self) -> ProblemType {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status
    }

    /// The stable slug of the type.
    pub fn slug(&self) -> &'static str {
        self.kind.slug
    }

    /// The title.
    pub fn title(&self) -> &'static str {
        self.kind.title
    }

    /// The detail (empty when none was set).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The request id, if known.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// Headers to send with the rejection.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.kind.slug)
    }

    /// Renders the problem document as JSON.
    pub fn to_json(&self) -> Bytes {
        let mut out = String::with_capacity(192 + self.detail.len());
        out.push_str("{\"type\":\"");
        out.push_str(TYPE_BASE);
        push_json_escaped(&mut out, self.kind.slug);
        out.push_str("\",\"title\":\"");
        push_json_escaped(&mut out, self.kind.title);
        out.push_str("\",\"status\":");
        out.push_str(self.kind.status.as_str());
        if !self.detail.is_empty() {
            out.push_str(",\"detail\":\"");
            push_json_escaped(&mut out, &self.detail);
            out.push('"');
        }
        if let Some(id) = &self.request_id {
            out.push_str(",\"request_id\":\"");
            push_json_escaped(&mut out, id.as_str());
            out.push('"');
        }
        out.push('}');
        Bytes::from(out)
    }

    /// Renders the problem as an `application/problem+json` response, or, for a gRPC request
    /// ([`Problem::grpc`]), as [`Problem::into_grpc_response`] does.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        if self.grpc {
            return self.into_grpc_response();
        }
        let body = self.to_json();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.kind.status;
        let headers = res.headers_mut();
        headers.reserve(self.headers.len() + 3);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let mut last = None;
        for (name, value) in self.headers {
            // `HeaderMap::into_iter` yields `None` names for further values of the same name.
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                headers.append(name.clone(), value);
            }
        }
        res
    }
}

impl Problem {
    /// Renders the problem as a gRPC trailers-only response: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` ([`Problem::grpc_code`]), the percent-encoded detail
    /// (or title) as `grpc-message`, `x-request-id`, the problem's headers, `retry-pushback-ms`
    /// from a `Retry-After`, and an empty body.
    pub fn into_grpc_response<B: From<Bytes>>(self) -> Response<B> {
        let mut res = Response::new(B::from(Bytes::new()));
        let code = self.grpc_code();
        let headers = res.headers_mut();
        headers.reserve(self.headers.len() + 5);
        let message = if self.detail.is_empty() {
            self.kind.title
        } else {
            &self.detail
        };
        grpc::status_headers(headers, code, message);
        if let Some(id) = &self.request_id
            && let Ok(v) = HeaderValue::from_str(id.as_str())
        {
            headers.insert(crate::request_id::X_REQUEST_ID, v);
        }
        let mut last = None;
        for (name, value) in self.headers {
            if let Some(name) = name {
                last = Some(name);
            }
            // `Connection: close` is HTTP/1's; a gRPC answer is over HTTP/2.
            if let Some(name) = last.as_ref().filter(|n| **n != header::CONNECTION) {
                headers.append(name.clone(), value);
            }
        }
        grpc::pushback_from(headers);
        res
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("status", &self.kind.status)
            .field("slug", &self.kind.slug)
            .field("detail", &self.detail)
            .field("request_id", &self.request_id)
            .field("grpc", &self.grpc)
            .finish()
    }
}

fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                use fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Turns a [`Problem`] into the response a layer sends.
///
/// Implemented by [`DefaultRejection`] (problem+json) and by every `Fn(Problem) -> Response<B>`.
/// The layer inserts the typed cause of the rejection in the extensions of whatever response
/// this returns.
pub trait MakeRejection<B> {
    /// Makes the response for `problem`.
    fn make_rejection(&self, problem: Problem) -> Response<B>;
}

impl<B, F> MakeRejection<B> for F
where
    F: Fn(Problem) -> Response<B>,
{
    fn make_rejection(&self, problem: Problem) -> Response<B> {
        self(problem)
    }
}

/// The marker, in the response extensions, of a rejection answered by a battlement layer in
/// place of the inner service because of the request or of the layer's own state: see the
/// [module docs](self). Only the crate's layers make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused;

/// The rejection `rejection` makes of `problem`, marked [`Refused`] (whatever the renderer).
pub(crate) fn refuse<B, R: MakeRejection<B> + ?Sized>(
    rejection: &R,
    problem: Problem,
) -> Response<B> {
    let mut res = rejection.make_rejection(problem);
    res.extensions_mut().insert(Refused);
    res
}

/// The default rejection: the problem as `application/problem+json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejection;

impl<B: From<Bytes>> MakeRejection<B> for DefaultRejection {
    fn make_rejection(&self, problem: Problem) -> Response<B> {
        problem.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_json() {
        let p = Problem::new(ProblemType::PAYLOAD_TOO_LARGE)
            .with_detail("too \"big\"\n")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let res: Response<Bytes> = DefaultRejection.make_rejection(p);
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            v["type"],
            "https://docs.rs/battlement/latest/battlement/problem/index.html#payload-too-large"
        );
        assert_eq!(v["title"], "Payload Too Large");
        assert_eq!(v["status"], 413);
        assert_eq!(v["detail"], "too \"big\"\n");
        assert!(v.get("request_id").is_none());
    }

    #[test]
    fn escapes_control_characters() {
        let p = Problem::new(ProblemType::BAD_REQUEST).with_detail("a\u{1}b\u{2028}");
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["detail"], "a\u{1}b\u{2028}");
    }

    #[test]
    fn closure_replaces_the_response() {
        let f = |p: Problem| {
            let mut r = Response::new(String::from(p.slug()));
            *r.status_mut() = p.status();
            r
        };
        let r = f.make_rejection(Problem::new(ProblemType::TOO_MANY_REQUESTS));
        assert_eq!(r.status(), 429);
        assert_eq!(r.body(), "too-many-requests");
    }
}
