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
use crate::stream;

pub async fn create(State(e): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let cfg: ExecConfig = json_body(&body)?;
    let exec_id = e.containers.exec_create(&id, cfg)?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "Id": exec_id }))).into_response())
}

pub async fn start(State(e): State<Arc<Engine>>, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|err| ApiError::bad_request(err.to_string()))?;
    let cfg: ExecStartConfig = json_body(&bytes)?;
    let detach = cfg.detach.unwrap_or(false);
    let size = cfg
        .console_size
        .as_ref()
        .filter(|s| s.len() == 2 && s[0] > 0)
        .map(|s| (s[0].min(u16::MAX as usize) as u16, s[1].min(u16::MAX as usize) as u16));
    let inst = e.containers.execs.get(&id)?;
    let tty = cfg.tty.or(inst.config.tty).unwrap_or(false);
    // Detach keys: the exec's own (`docker exec --detach-keys`), else ctrl-p ctrl-q.
    let keys = match inst.config.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => {
            stream::parse_detach_keys(k).ok_or_else(|| ApiError::bad_request(format!("invalid detach keys: {k}")))?
        }
        None => vec![16, 17],
    };
    e.containers.exec_startable(&id)?;
    let req = Request::from_parts(parts, axum::body::Body::empty());
    if detach {
        e.containers.exec_start(&id, true, cfg.tty, size).await?;
        return Ok(StatusCode::OK.into_response());
    }
    if req.headers().get(axum::http::header::UPGRADE).is_none() {
        let handle = e
            .containers
            .exec_start(&id, false, cfg.tty, size)
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
        match e.containers.exec_start(&id, false, cfg.tty, size).await {
            Ok(Some(handle)) => stream::relay(io, handle, Some(keys)).await,
            Ok(None) => {}
            Err(err) => stream::write_error(io, &err.message, tty).await,
        }
    });
    Ok(stream::upgraded_response(tty))
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
