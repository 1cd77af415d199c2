//! Request handlers, one module per resource.

pub mod build;
pub mod containers;
pub mod exec;
pub mod images;
pub mod networks;
pub mod system;
pub mod volumes;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON response.
pub fn json<T: Serialize>(v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON request body; errors read as Docker's.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("invalid JSON: request body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}
