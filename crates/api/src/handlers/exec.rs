//! `/containers/{id}/exec` and `/exec/...`

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};

use super::{json, json_body};
use crate::backend::ExecBackend;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

/// The exec routes on `backend`.
pub fn routes<B: ExecBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/containers/{id}/exec", post(create::<B>))
        .route("/exec/{id}/start", post(start::<B>))
        .route("/exec/{id}/resize", post(resize::<B>))
        .route("/exec/{id}/json", get(inspect::<B>))
        .with_state(backend)
}

pub async fn create<B: ExecBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let cfg: ExecConfig = json_body(&body)?;
    let exec_id = b.create(&id, cfg)?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "Id": exec_id }))).into_response())
}

pub async fn start<B: ExecBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|err| ApiError::bad_request(err.to_string()))?;
    let cfg: ExecStartConfig = json_body(&bytes)?;
    let detach = cfg.detach.unwrap_or(false);
    let size = cfg
        .console_size
        .as_ref()
        .filter(|s| s.len() == 2 && s[0] > 0)
        .map(|s| (s[0].min(u16::MAX as usize) as u16, s[1].min(u16::MAX as usize) as u16));
    let config = b.config(&id)?;
    let tty = cfg.tty.or(config.tty).unwrap_or(false);
    // Detach keys: the exec's own (`docker exec --detach-keys`), else ctrl-p ctrl-q.
    let keys = match config.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => {
            stream::parse_detach_keys(k).ok_or_else(|| ApiError::bad_request(format!("invalid detach keys: {k}")))?
        }
        None => vec![16, 17],
    };
    b.startable(&id)?;
    let req = Request::from_parts(parts, axum::body::Body::empty());
    if detach {
        b.start(&id, true, cfg.tty, size).await?;
        return Ok(StatusCode::OK.into_response());
    }
    if req.headers().get(axum::http::header::UPGRADE).is_none() {
        let handle = b
            .start(&id, false, cfg.tty, size)
            .await?
            .ok_or_else(|| ApiError(skiff_engine::EngineError::internal("exec detached")))?;
        return Ok(super::containers::hijack(req, handle, None).await);
    }
    // As dockerd: the connection is handed over first and the process starts after, so no
    // output can reach the client inside the buffer its HTTP library read the 101 headers with
    // (docker-py reads the raw socket after the headers: output already buffered was lost).
    let on_upgrade = hyper::upgrade::on(req);
    crate::tasks::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(up);
        match b.start(&id, false, cfg.tty, size).await {
            Ok(Some(handle)) => stream::relay(io, handle, Some(keys)).await,
            Ok(None) => {}
            Err(err) => stream::write_error(io, &err.message, tty).await,
        }
    });
    Ok(stream::upgraded_response(tty))
}

pub async fn resize<B: ExecBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let (h, w) = p.terminal_size()?;
    b.resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn inspect<B: ExecBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&b.inspect(&id)?))
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
