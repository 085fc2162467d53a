use std::fmt;

use axum::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::problem::{Problem, ProblemType};

use super::RequestId;

/// With the `axum` feature, a handler can take the id directly:
/// `async fn handler(id: RequestId)`. Without `SetRequestIdLayer` outside the handler the
/// extraction fails with [`MissingRequestId`] (a 500: the server is misconfigured).
impl<S: Sync> FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or(MissingRequestId)
    }
}

/// The request has no [`RequestId`]: `SetRequestIdLayer` does not wrap this handler.
///
/// Answered as an RFC 9457 `internal-error` problem (500); the detail does not say why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MissingRequestId;

impl fmt::Display for MissingRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no request id: `SetRequestIdLayer` does not wrap this handler")
    }
}

impl std::error::Error for MissingRequestId {}

impl IntoResponse for MissingRequestId {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        let mut res: Response = Problem::new(ProblemType::INTERNAL_ERROR).into_response();
        res.extensions_mut().insert(self);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, body::Body, routing::get};
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn extracts_or_rejects() {
        let handler = |id: RequestId| async move { id.to_string() };
        let app = Router::new().route("/", get(handler));
        let res = app
            .clone()
            .layer(super::super::SetRequestIdLayer::new())
            .oneshot(
                Request::builder()
                    .header("x-request-id", "abc")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(res.extensions().get::<MissingRequestId>().is_some());
    }
}
