//! `/volumes/...`

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{Volume, VolumeCreateOptions, VolumeListResponse, VolumeScopeEnum};
use skiff_engine::Engine;
use skiff_engine::volumes::VolumeRecord;

use super::{json, json_body, no_content};
use crate::error::{ApiError, ApiResult};
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

pub async fn create(State(e): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateOptions = json_body(&body)?;
    let labels: BTreeMap<String, String> = req.labels.unwrap_or_default().into_iter().collect();
    let opts: BTreeMap<String, String> = req.driver_opts.unwrap_or_default().into_iter().collect();
    let v = e.volumes.create(req.name.as_deref().filter(|n| !n.is_empty()), req.driver.as_deref(), labels, opts)?;
    Ok((StatusCode::CREATED, axum::Json(api(&v))).into_response())
}

pub async fn list(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let in_use = e.containers.volumes_in_use();
    let mut out = Vec::new();
    for v in e.volumes.list()? {
        let ok = f.iter().all(|(k, vals)| {
            vals.iter().any(|val| match k.as_str() {
                "name" => v.name.contains(val.as_str()),
                "driver" => v.driver == *val,
                "dangling" => (val == "true" || val == "1") != in_use.contains(&v.name),
                "label" => match val.split_once('=') {
                    Some((lk, lv)) => v.labels.get(lk).map(|x| x == lv).unwrap_or(false),
                    None => v.labels.contains_key(val.as_str()),
                },
                _ => false,
            })
        });
        if ok {
            out.push(api(&v));
        }
    }
    Ok(json(&VolumeListResponse { volumes: Some(out), warnings: Some(vec![]) }))
}

pub async fn inspect(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(json(&api(&e.volumes.inspect(&name)?)))
}

pub async fn remove(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let _force = Params::parse(q.as_deref()).bool("force", false);
    e.volumes.inspect(&name)?;
    if let Some(c) = e.containers.all().into_iter().find(|c| c.with(|r| r.mounts.iter().any(|m| m.source == name))) {
        return Err(ApiError(skiff_engine::EngineError::conflict(format!(
            "remove {name}: volume is in use - [{}]",
            c.id
        ))));
    }
    e.volumes.remove(&name)?;
    Ok(no_content())
}

pub async fn prune(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let all = f.get("all").is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    let in_use = e.containers.volumes_in_use();
    let mut deleted = Vec::new();
    let mut reclaimed = 0i64;
    for v in e.volumes.list()? {
        if in_use.contains(&v.name) || (!all && !v.anonymous) {
            continue;
        }
        let labels_ok = f.get("label").is_none_or(|ls| {
            ls.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).map(|x| x == val).unwrap_or(false),
                None => v.labels.contains_key(l.as_str()),
            })
        });
        if !labels_ok {
            continue;
        }
        reclaimed += e.volumes.size(&v) as i64;
        e.volumes.remove(&v.name)?;
        deleted.push(v.name);
    }
    Ok(json(&serde_json::json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed })))
}
