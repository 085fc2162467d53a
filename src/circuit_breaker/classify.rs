//! What counts as a failure.

use http::Response;

use super::breaker::Outcome;
use crate::problem::Refused;

/// Decides whether a call's result is a success, a failure or not counted.
///
/// Implemented by [`DefaultClassifier`] and by every closure
/// `Fn(Result<&Response<B>, &E>) -> Outcome`:
///
/// ```
/// use battlement::circuit_breaker::{ClassifyResponse, Outcome};
/// use http::{Response, StatusCode};
///
/// // Count 429 as a failure too, and ignore 501 (a client asking for something unsupported).
/// let classify = |res: Result<&Response<()>, &std::io::Error>| match res {
///     Err(_) => Outcome::Failure,
///     Ok(r) if r.status() == StatusCode::NOT_IMPLEMENTED => Outcome::Ignored,
///     Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
///         Outcome::Failure
///     }
///     Ok(_) => Outcome::Success,
/// };
/// let res = Response::builder().status(429).body(()).unwrap();
/// assert_eq!(classify.classify(Ok(&res)), Outcome::Failure);
/// ```
pub trait ClassifyResponse<B, E> {
    /// Classifies one result.
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome;
}

impl<B, E, F> ClassifyResponse<B, E> for F
where
    F: Fn(Result<&Response<B>, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every error of the inner service (connection errors, timeouts such
/// as `tower::timeout::error::Elapsed`, ...) and every 5xx response is a failure; everything
/// else, 4xx included, is a success (a client's mistake says nothing about the upstream).
///
/// A rejection by one of battlement's own layers (it carries the
/// [`Refused`](crate::problem::Refused) marker: a 401, 413, 429, the 408 of a request body the
/// client stopped sending, an inner breaker's open 503, a replay store that cannot answer...)
/// is [`Outcome::Ignored`]: it says nothing about the service behind, and counting it would
/// let any client open the breaker for everyone. The 503 of a handler slower than the request
/// timeout, and the 500 of a panic, are failures.
///
/// A gRPC answer is an HTTP 200 whatever its outcome: a `grpc-status` in the response headers
/// (a trailers-only answer, which is how gRPC servers answer most failures) is read, and a
/// server's failure (`UNAVAILABLE` 14, `INTERNAL` 13, `UNKNOWN` 2, `DEADLINE_EXCEEDED` 4,
/// `DATA_LOSS` 15: [`grpc::is_server_failure`](crate::grpc::is_server_failure)) counts as one;
/// the client's (`INVALID_ARGUMENT` 3, `NOT_FOUND` 5, ...) does not. A `grpc-status` sent only
/// in the trailers of a streamed body is not seen here (the classifier runs on the head).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<B, E> ClassifyResponse<B, E> for DefaultClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) if res.extensions().get::<Refused>().is_some() => Outcome::Ignored,
            Ok(res) if res.status().is_server_error() => Outcome::Failure,
            // One header lookup, on successful answers only.
            Ok(res)
                if res.status().is_success()
                    && crate::grpc::status_of(res.headers(), None)
                        .is_some_and(crate::grpc::is_server_failure) =>
            {
                Outcome::Failure
            }
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    #[test]
    fn default_classifier() {
        let c = DefaultClassifier;
        let ok = |s| ClassifyResponse::<(), std::io::Error>::classify(&c, Ok(&res(s)));
        assert_eq!(ok(200), Outcome::Success);
        assert_eq!(ok(304), Outcome::Success);
        assert_eq!(ok(404), Outcome::Success);
        assert_eq!(ok(429), Outcome::Success);
        assert_eq!(ok(500), Outcome::Failure);
        assert_eq!(ok(503), Outcome::Failure);
        assert_eq!(ok(599), Outcome::Failure);
        let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(
            ClassifyResponse::<(), tower::BoxError>::classify(&c, Err(&elapsed)),
            Outcome::Failure
        );
    }

    #[test]
    fn grpc_status_in_the_headers_is_read() {
        let c = DefaultClassifier;
        let grpc = |code: &str| {
            let r = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", code)
                .body(())
                .unwrap();
            ClassifyResponse::<(), std::io::Error>::classify(&c, Ok(&r))
        };
        assert_eq!(grpc("14"), Outcome::Failure);
        assert_eq!(grpc("13"), Outcome::Failure);
        assert_eq!(grpc("0"), Outcome::Success);
        assert_eq!(grpc("3"), Outcome::Success);
        assert_eq!(grpc("16"), Outcome::Success);
        assert_eq!(grpc("garbage"), Outcome::Success);
    }

    #[test]
    fn the_stacks_own_rejections_are_not_counted() {
        use crate::problem::{DefaultRejection, Problem, ProblemType, refuse};
        let c = DefaultClassifier;
        let class = |res: &Response<bytes::Bytes>| {
            ClassifyResponse::<_, std::io::Error>::classify(&c, Ok(res))
        };
        for kind in [
            ProblemType::SERVICE_UNAVAILABLE,
            ProblemType::REQUEST_TIMEOUT,
            ProblemType::INTERNAL_ERROR,
            ProblemType::TOO_MANY_REQUESTS,
        ] {
            let refused = refuse(&DefaultRejection, Problem::new(kind));
            assert_eq!(class(&refused), Outcome::Ignored, "{kind:?}");
            // The same problem answered by the application itself is its own: a 5xx counts.
            let own: Response<bytes::Bytes> = Problem::new(kind).into_response();
            let expected = if kind.status().is_server_error() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(class(&own), expected, "{kind:?}");
        }
    }

    #[test]
    fn closure_classifier() {
        let c = |r: Result<&Response<()>, &()>| match r {
            Ok(r) if r.status() == 418 => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Ignored,
        };
        assert_eq!(c.classify(Ok(&res(418))), Outcome::Ignored);
        assert_eq!(c.classify(Ok(&res(500))), Outcome::Success);
        assert_eq!(c.classify(Err(&())), Outcome::Ignored);
    }
}
