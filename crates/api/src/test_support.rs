//! Helpers for the routers' unit tests: one request through the version check and a router.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

/// Sends one request as skiffd would route it (version prefix stripped first).
pub async fn send(router: Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.starts_with('{') || body.starts_with('[') {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let resp = match crate::version::strip(req) {
        Ok(req) => match crate::content_type::checked(req).await {
            Ok(req) => router.oneshot(req).await.unwrap(),
            Err(r) => *r,
        },
        Err(r) => *r,
    };
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The `message` of an error answer.
pub fn message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["message"].as_str().unwrap_or_default().to_string()
}

/// A JSON answer.
pub fn value(body: &str) -> serde_json::Value {
    serde_json::from_str(body.trim()).unwrap()
}
