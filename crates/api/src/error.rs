//! Engine errors as HTTP responses: the one place where a kind becomes a status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use skiff_engine::{EngineError, Kind};

#[derive(Debug)]
pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError(EngineError::invalid(msg))
    }
}

pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Invalid => StatusCode::BAD_REQUEST,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::NotModified => StatusCode::NOT_MODIFIED,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::warn!(error = %self.0.message, "request failed");
        }
        (status, axum::Json(serde_json::json!({ "message": self.0.message }))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
