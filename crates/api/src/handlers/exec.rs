//! `/containers/{id}/exec` and `/exec/...`

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use skiff_engine::Engine;

use super::{json, json_body};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

pub async fn create(State(e): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let cfg: ExecConfig = json_body(&body)?;
    let exec_id = e.containers.exec_create(&id, cfg)?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "Id": exec_id }))).into_response())
}

pub async fn start(State(e): State<Arc<Engine>>, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|err| ApiError::bad_request(err.to_string()))?;
    let cfg: ExecStartConfig = if bytes.is_empty() { ExecStartConfig::default() } else { json_body(&bytes)? };
    let detach = cfg.detach.unwrap_or(false);
    let size = cfg
        .console_size
        .as_ref()
        .filter(|s| s.len() == 2 && s[0] > 0)
        .map(|s| (s[0].min(u16::MAX as usize) as u16, s[1].min(u16::MAX as usize) as u16));
    let tty = cfg.tty.or(e.containers.execs.get(&id)?.config.tty).unwrap_or(false);
    let req = Request::from_parts(parts, axum::body::Body::empty());
    let handle = match e.containers.exec_start(&id, detach, cfg.tty, size).await {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(StatusCode::OK.into_response()),
        // As Docker: once the client asked to hijack, a failure to start is written into the
        // stream (and the exec's exit code, 126, is what the client reports).
        Err(err) if !detach && req.headers().get(axum::http::header::UPGRADE).is_some() => {
            return Ok(super::containers::hijack_error(req, err.message, tty).await);
        }
        Err(err) => return Err(err.into()),
    };
    Ok(super::containers::hijack(req, handle, None).await)
}

pub async fn resize(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let h = p.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = p.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    e.containers.exec_resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn inspect(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&e.containers.exec_inspect(&id)?))
}
