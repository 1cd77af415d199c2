//! `/volumes/...`

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard_stubs::models::{Volume, VolumeCreateOptions, VolumeListResponse, VolumeScopeEnum};
use skiff_engine::volumes::VolumeRecord;

use super::{json, json_body, no_content};
use crate::backend::VolumeBackend;
use crate::error::ApiResult;
use crate::params::Params;

fn api(v: &VolumeRecord) -> Volume {
    Volume {
        name: v.name.clone(),
        driver: v.driver.clone(),
        mountpoint: v.mountpoint.display().to_string(),
        created_at: Some(v.created_at.clone()),
        status: None,
        labels: v.labels.clone().into_iter().collect(),
        scope: Some(VolumeScopeEnum::LOCAL),
        cluster_volume: None,
        options: v.options.clone().into_iter().collect(),
        usage_data: None,
    }
}

/// The volume routes on `backend`.
pub fn routes<B: VolumeBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/volumes", get(list::<B>))
        .route("/volumes/create", post(create::<B>))
        .route("/volumes/prune", post(prune::<B>))
        .route("/volumes/{name}", get(inspect::<B>).delete(remove::<B>))
        .with_state(backend)
}

pub async fn create<B: VolumeBackend>(State(b): State<Arc<B>>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateOptions = json_body(&body)?;
    let labels: BTreeMap<String, String> = req.labels.unwrap_or_default().into_iter().collect();
    let opts: BTreeMap<String, String> = req.driver_opts.unwrap_or_default().into_iter().collect();
    let v = b.create(req.name.as_deref().filter(|n| !n.is_empty()), req.driver.as_deref(), labels, opts)?;
    Ok((StatusCode::CREATED, axum::Json(api(&v))).into_response())
}

pub async fn list<B: VolumeBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let filters = Params::parse(q.as_deref()).filters()?;
    let out: Vec<Volume> = b.list(&filters)?.iter().map(api).collect();
    Ok(json(&VolumeListResponse { volumes: Some(out), warnings: Some(vec![]) }))
}

pub async fn inspect<B: VolumeBackend>(State(b): State<Arc<B>>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(json(&api(&b.inspect(&name)?)))
}

pub async fn remove<B: VolumeBackend>(State(b): State<Arc<B>>, Path(name): Path<String>) -> ApiResult<Response> {
    // `force` only matters for volume plugins (none here): a local volume in use stays.
    b.remove(&name)?;
    Ok(no_content())
}

pub async fn prune<B: VolumeBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let report = b.prune(&Params::parse(q.as_deref()).filters()?)?;
    Ok(json(&serde_json::json!({ "VolumesDeleted": report.deleted, "SpaceReclaimed": report.reclaimed })))
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
