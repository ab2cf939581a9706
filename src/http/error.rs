//! Errors on the HTTP face: the hub's error goes through the one gRPC policy
//! (`impl From<Error> for Status` in `api::status`: what the client may see, what is logged),
//! and the resulting status becomes `{"code":"NOT_FOUND","message":"job x not found"}` with the
//! HTTP status of the `google.rpc.Code` mapping (INVALID_ARGUMENT and FAILED_PRECONDITION 400,
//! UNAUTHENTICATED 401 with `WWW-Authenticate: Bearer`, PERMISSION_DENIED 403, NOT_FOUND 404,
//! RESOURCE_EXHAUSTED 429, INTERNAL 500, UNAVAILABLE 503, …).

use crate::error::Error;
use crate::metrics::code_name;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use tonic::{Code, Status};

/// A failed HTTP call, as the gRPC status the same failure would have been.
#[derive(Debug)]
pub struct ApiError(pub Status);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(Status::from(e))
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

impl ApiError {
    /// The JSON body: the code's name and the message a gRPC client would have read.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "code": code_name(self.0.code()),
            "message": self.0.message(),
        })
    }

    pub fn http_status(&self) -> StatusCode {
        http_status(self.0.code())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.body().to_string();
        body.push('\n');
        let mut response = (
            self.http_status(),
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        if self.0.code() == Code::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"backwatch\""),
            );
        }
        response
    }
}

/// The HTTP status for a gRPC code, as `google/rpc/code.proto` documents it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_errors_keep_the_grpc_policy() {
        let e = ApiError::from(Error::NotFound("job x not found".into()));
        assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.body(),
            serde_json::json!({"code": "NOT_FOUND", "message": "job x not found"})
        );
        let e = ApiError::from(Error::invalid("page_size", "must be a whole number"));
        assert_eq!(e.http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["message"], "page_size: must be a whole number");
        let e = ApiError::from(Error::Internal("disk I/O error in table jobs".into()));
        assert_eq!(e.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !e.body()["message"].as_str().unwrap().contains("jobs"),
            "causes stay in the log"
        );
        let e = ApiError::from(Error::Unavailable("connection refused".into()));
        assert_eq!(e.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.body()["code"], "UNAVAILABLE");
        assert_eq!(
            ApiError::from(Status::unauthenticated("missing token")).http_status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::from(Status::permission_denied("viewer")).http_status(),
            StatusCode::FORBIDDEN
        );
    }
}
