//! Swarm-mode endpoints (`/swarm*`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`)
//! answered as a dockerd that is not part of a swarm answers them, and `/plugins` as a daemon
//! with none installed: clients that probe or clean up (docker-py's teardowns call
//! `POST /swarm/leave`, the Go test harness lists plugins) get what they expect, not a 404.

use axum::http::Method;
use axum::response::Response;

use super::json;
use crate::error::{ApiError, ApiResult};

const NOT_IN_SWARM: &str = "This node is not part of a swarm";

/// Any swarm-mode endpoint. `init` and `join` would make this node part of one: skiff has no
/// cluster mode yet, so they say that instead.
pub async fn not_in_swarm(method: Method, uri: axum::http::Uri) -> ApiResult<Response> {
    let path = uri.path();
    if method == Method::POST && (path.ends_with("/swarm/init") || path.ends_with("/swarm/join")) {
        return Err(ApiError(skiff_engine::EngineError::new(
            skiff_engine::Kind::Unavailable,
            "swarm mode is not available in skiff yet (cluster mode is planned)",
        )));
    }
    Err(ApiError(skiff_engine::EngineError::new(skiff_engine::Kind::Unavailable, NOT_IN_SWARM)))
}

/// `GET /plugins`: none installed.
pub async fn plugins() -> Response {
    json(&serde_json::json!([]))
}
