//! `/containers/...`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bollard_stubs::models::{ContainerCreateBody, ContainerCreateResponse, ContainerUpdateBody, ContainerWaitResponse};
use skiff_engine::Engine;
use skiff_engine::container::Status;
use skiff_engine::container::logs::{LogOptions, parse_time};
use skiff_runtime::logfile::Stream;
use skiff_runtime::protocol::Streams;
use tokio::sync::mpsc;

use super::{from_json_value, json, json_body, json_value, no_content};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;
use crate::version::{ApiVersion, adapt};

pub async fn create(
    State(e): State<Arc<Engine>>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let value = json_value(&body)?;
    if let Some(hc) = value.get("HostConfig") {
        check_host_config_enums(hc)?;
    }
    let mut req: ContainerCreateBody = from_json_value(value)?;
    adapt::container_create(v, req.host_config.get_or_insert_with(Default::default), e.containers.layout.is_v2());
    if let Some(pl) = p.string("platform").filter(|s| !s.is_empty()) {
        // An image for another platform is not the image asked for (dockerd: not found).
        let want = skiff_image::spec::Platform::parse(&pl).map_err(ApiError::bad_request)?;
        let image = req.image.clone().unwrap_or_default();
        if let Some(have) = e.images.platform_of(&image)
            && !want.matches(&have)
        {
            return Err(skiff_engine::EngineError::not_found(format!(
                "No such image: {image} (it is for {}/{}, not {pl})",
                have.os, have.architecture
            ))
            .into());
        }
    }
    let (id, warnings) = e.containers.create(p.string("name"), req).await?;
    Ok((StatusCode::CREATED, axum::Json(ContainerCreateResponse { id, warnings })).into_response())
}

/// HostConfig's enumerated values checked before decoding, so that a wrong one gets dockerd's
/// message rather than a decoder's.
fn check_host_config_enums(hc: &serde_json::Value) -> ApiResult<()> {
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    if let Some(m) = text(hc.get("CgroupnsMode"))
        && !matches!(m.as_str(), "" | "host" | "private")
    {
        return Err(ApiError::bad_request(format!("invalid cgroup namespace mode: {m}")));
    }
    if let Some(n) = text(hc.get("RestartPolicy").and_then(|r| r.get("Name")))
        && !matches!(n.as_str(), "" | "no" | "always" | "unless-stopped" | "on-failure")
    {
        return Err(ApiError::bad_request(format!(
            "invalid restart policy: unknown policy '{n}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )));
    }
    for m in hc.get("Mounts").and_then(|m| m.as_array()).into_iter().flatten() {
        if let Some(t) = text(m.get("Type"))
            && !matches!(t.as_str(), "bind" | "volume" | "tmpfs" | "npipe" | "cluster")
        {
            return Err(ApiError::bad_request(format!("invalid mount config for type \"{t}\": mount type unknown")));
        }
    }
    Ok(())
}

fn matches_filters(
    e: &Engine,
    r: &skiff_engine::container::ContainerRecord,
    f: &BTreeMap<String, Vec<String>>,
) -> ApiResult<bool> {
    for (k, vals) in f {
        let test = |v: &String| match k.as_str() {
            "id" => r.id.starts_with(v.as_str()),
            "name" => r.name.contains(v.trim_start_matches('/')),
            "status" => {
                r.state.status.as_str() == v
                    || (v == "created" && r.state.status == Status::Exited && r.state.started_at.is_none())
            }
            "exited" => r.state.status == Status::Exited && v.parse::<i32>().ok() == Some(r.state.exit_code),
            "label" => {
                let labels = r.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((lk, lv)) => labels.get(lk).map(|x| x == lv).unwrap_or(false),
                    None => labels.contains_key(v.as_str()),
                }
            }
            "ancestor" => r.image_ref == *v || e.images.id_of(v).is_some_and(|id| id == r.image_id.to_string()),
            "volume" => r.mounts.iter().any(|m| m.source == *v || m.destination == *v),
            "network" => {
                r.host_config.network_mode.as_deref() == Some(v.as_str())
                    || r.networks.iter().any(|n| n.network_name == *v || n.network_id.starts_with(v.as_str()))
            }
            "health" => r.state.health.as_ref().map(|h| h.status.as_str()).unwrap_or("none") == v,
            "is-task" => v == "false",
            "before" | "since" => true,
            _ => false,
        };
        // Labels must all match; other filters match any of their values.
        let ok = if k == "label" { vals.iter().all(test) } else { vals.iter().any(test) };
        if !ok {
            return Ok(false);
        }
        if !matches!(
            k.as_str(),
            "id" | "name"
                | "status"
                | "exited"
                | "label"
                | "ancestor"
                | "volume"
                | "network"
                | "health"
                | "is-task"
                | "before"
                | "since"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(true)
}

pub async fn list(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let all = p.bool("all", false);
    let size = p.bool("size", false);
    let limit = p.int("limit")?.filter(|l| *l > 0);
    let filters = p.filters()?;
    let mut recs: Vec<_> = e.containers.all().into_iter().map(|c| c.record()).collect();
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    let before = filters
        .get("before")
        .and_then(|v| v.first())
        .map(|k| e.containers.get(k))
        .transpose()?
        .map(|c| c.record().created);
    let since = filters
        .get("since")
        .and_then(|v| v.first())
        .map(|k| e.containers.get(k))
        .transpose()?
        .map(|c| c.record().created);
    let mut out = Vec::new();
    for r in recs {
        let listed = all
            || r.state.status.is_live()
            || r.state.status == Status::Restarting
            || filters.contains_key("status")
            || limit.is_some();
        if !listed || !matches_filters(&e, &r, &filters)? {
            continue;
        }
        if before.as_ref().is_some_and(|b| r.created >= *b) || since.as_ref().is_some_and(|s| r.created <= *s) {
            continue;
        }
        out.push(e.containers.summary(&r, size));
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(json(&out))
}

pub async fn inspect(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let api = v;
    let mut doc = serde_json::to_value(e.containers.inspect(&id, p.bool("size", false))?)
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))?;
    crate::shape::container_inspect(&mut doc);
    adapt::container_inspect(api, &mut doc);
    Ok(json(&doc))
}

pub async fn start(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    e.containers.start(&id).await?;
    Ok(no_content())
}

pub async fn stop(State(e): State<Arc<Engine>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    e.containers.stop(&id, p.int("t")?, p.string("signal")).await?;
    Ok(no_content())
}

pub async fn restart(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    e.containers.restart(&id, p.int("t")?, p.string("signal")).await?;
    Ok(no_content())
}

pub async fn kill(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    match e.containers.kill(&id, p.string("signal")).await {
        Err(err) if err.kind == skiff_engine::Kind::Conflict && adapt::kill_not_running_is_ok(v) => {}
        r => r?,
    }
    Ok(no_content())
}

pub async fn pause(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    e.containers.pause(&id, true).await?;
    Ok(no_content())
}

pub async fn unpause(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    e.containers.pause(&id, false).await?;
    Ok(no_content())
}

pub async fn remove(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    if p.bool("link", false) {
        return Err(ApiError::bad_request(format!(
            "Conflict, cannot remove the default link name of the container /{id}"
        )));
    }
    e.containers.remove(&id, p.bool("force", false), p.bool("v", false)).await?;
    Ok(no_content())
}

/// `DELETE /containers/PARENT/ALIAS?link=1` (`docker rm --link`): a legacy link.
pub async fn remove_link(
    State(e): State<Arc<Engine>>,
    Path((id, link)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    if !p.bool("link", false) || link.contains('/') {
        return Err(ApiError(skiff_engine::EngineError::no_container(&format!("{id}/{link}"))));
    }
    e.containers.remove_link(&id, &link)?;
    Ok(no_content())
}

pub async fn rename(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let name = p.string("name").ok_or_else(|| ApiError::bad_request("missing name"))?;
    e.containers.rename(&id, &name)?;
    Ok(no_content())
}

pub async fn wait(State(e): State<Arc<Engine>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let condition = p.string("condition").unwrap_or_default();
    if !matches!(condition.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!("invalid condition: {condition:?}")));
    }
    // Resolve now so an unknown container is a 404, then answer headers at once and the
    // status when it comes (the CLI waits on this while it starts the container).
    e.containers.get(&id)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let body = match e.containers.wait(&id, &condition).await {
            Ok((code, err)) => serde_json::to_value(ContainerWaitResponse {
                status_code: code,
                error: err.map(|m| bollard_stubs::models::ContainerWaitExitError { message: Some(m) }),
            })
            .unwrap_or_default(),
            Err(err) => {
                serde_json::json!({ "StatusCode": -1, "Error": { "Message": err.message } })
            }
        };
        let _ = tx.send(body).await;
    });
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /containers/{id}/attach` and `/exec/{id}/start` share this: upgrade and relay, or
/// stream output in a plain response.
pub(crate) async fn hijack(
    req: Request,
    handle: skiff_engine::container::attach::AttachHandle,
    detach: Option<Vec<u8>>,
) -> Response {
    let wants_upgrade = req.headers().get(header::UPGRADE).is_some();
    let handle_tty = handle.tty;
    let content_type =
        if handle.tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    if !wants_upgrade {
        let mut r = Response::new(stream::output_body(handle));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return r;
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => stream::relay(hyper_util::rt::TokioIo::new(up), handle, detach).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    stream::upgraded_response(handle_tty)
}

pub async fn attach(State(e): State<Arc<Engine>>, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let streams =
        Streams { stdin: p.bool("stdin", false), stdout: p.bool("stdout", false), stderr: p.bool("stderr", false) };
    let detach = match p.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => Some(
            stream::parse_detach_keys(k).ok_or_else(|| ApiError::bad_request(format!("invalid detach keys: {k}")))?,
        ),
        None => Some(vec![16, 17]),
    };
    if p.bool("logs", false) && !p.bool("stream", false) {
        // Logs only, no live stream.
        let (tty, rx) = e
            .containers
            .logs(&id, LogOptions { stdout: streams.stdout, stderr: streams.stderr, ..Default::default() })?;
        if req.headers().get(header::UPGRADE).is_none() {
            return Ok(log_response(tty, rx, false, false));
        }
        // A client that asked to upgrade reads the raw connection until it closes (as from
        // dockerd's hijacked connection): the log, unframed by HTTP, then the end.
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                stream::write_log_and_close(hyper_util::rt::TokioIo::new(up), tty, rx).await;
            }
        });
        return Ok(stream::upgraded_response(tty));
    }
    let handle = e.containers.attach(&id, streams).await?;
    Ok(hijack(req, handle, detach).await)
}

/// `docker logs --details`: the entry's attributes as `k=v,k2=v2` (query-escaped, by key) and a
/// space, as dockerd writes them (just the space when there are none).
fn details_prefix(attrs: Option<&std::collections::BTreeMap<String, String>>) -> Vec<u8> {
    let esc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut out = attrs
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes();
    out.push(b' ');
    out
}

fn log_response(
    tty: bool,
    mut rx: mpsc::Receiver<skiff_engine::container::logs::LogLine>,
    timestamps: bool,
    details: bool,
) -> Response {
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            let mut data = Vec::with_capacity(l.data.len() + 32);
            if timestamps {
                data.extend_from_slice(l.time.as_bytes());
                data.push(b' ');
            }
            if details {
                data.extend_from_slice(&details_prefix(l.attrs.as_ref()));
            }
            data.extend_from_slice(&l.data);
            let chunk = if tty {
                Bytes::from(data)
            } else {
                stream::mux(if l.stream == Stream::Stdout { 1 } else { 2 }, &data)
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(out)));
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

pub async fn logs(State(e): State<Arc<Engine>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let tail = match p.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => {
            Some(t.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid tail value: {t}")))?.max(0)
                as usize)
        }
    };
    let since = match p.get("since").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    let until = match p.get("until").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    let opts = LogOptions {
        stdout: p.bool("stdout", false),
        stderr: p.bool("stderr", false),
        follow: p.bool("follow", false),
        tail,
        since,
        until,
    };
    let (tty, rx) = e.containers.logs(&id, opts)?;
    Ok(log_response(tty, rx, p.bool("timestamps", false), p.bool("details", false)))
}

pub async fn resize(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let h = p.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = p.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    e.containers.resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn top(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&e.containers.top(&id)?))
}

pub async fn changes(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let e2 = e.clone();
    let changes = tokio::task::spawn_blocking(move || e2.containers.changes(&id))
        .await
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))??;
    let out: Vec<serde_json::Value> =
        changes.iter().map(|c| serde_json::json!({ "Path": c.path.display().to_string(), "Kind": c.kind })).collect();
    Ok(json(&out))
}

pub async fn export(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    e.containers.get(&id)?;
    let body = stream::blocking_body(move |w| e.containers.export(&id, w));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn stats(State(e): State<Arc<Engine>>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let streaming = p.bool("stream", true);
    let one_shot = p.bool("one-shot", false);
    e.containers.get(&id)?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut pre = None;
        if !streaming && !one_shot {
            // Two readings a second apart, so the client can compute CPU usage.
            pre = e.containers.sample(&id).ok().flatten();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        loop {
            let cur = e.containers.sample(&id).ok().flatten();
            let Ok(resp) = e.containers.stats_response(&id, cur.as_ref(), pre.as_ref()) else {
                return;
            };
            if tx.send(serde_json::to_value(&resp).unwrap_or_default()).await.is_err() || !streaming || cur.is_none() {
                return;
            }
            pre = cur;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn update(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut req: ContainerUpdateBody = json_body(&body)?;
    adapt::container_update(v, &mut req);
    let warnings = e.containers.update_resources(&id, req).await?;
    Ok(json(&serde_json::json!({ "Warnings": warnings })))
}

fn stat_header(s: &skiff_engine::container::archive::PathStat) -> HeaderValue {
    let j = serde_json::to_vec(s).unwrap_or_default();
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(j)).unwrap_or(HeaderValue::from_static(""))
}

pub async fn archive_head(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let e2 = e.clone();
    let st = tokio::task::spawn_blocking(move || e2.containers.stat_path(&id, &path))
        .await
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))??;
    let mut h = HeaderMap::new();
    h.insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok((StatusCode::OK, h).into_response())
}

pub async fn archive_get(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let (e2, id2, path2) = (e.clone(), id.clone(), path.clone());
    let st = tokio::task::spawn_blocking(move || e2.containers.stat_path(&id2, &path2))
        .await
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))??;
    let body = stream::blocking_body(move |w| e.containers.archive_path(&id, &path, w).map(|_| ()));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok(r)
}

pub async fn archive_put(State(e): State<Arc<Engine>>, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let copy_ids = p.bool("copyUIDGID", false);
    let no_overwrite = p.bool("noOverwriteDirNonDir", false);
    let reader = stream::BodyReader::new(req.into_body());
    tokio::task::spawn_blocking(move || e.containers.extract_to(&id, &path, reader, copy_ids, no_overwrite))
        .await
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))??;
    Ok(StatusCode::OK.into_response())
}

pub async fn prune(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let filters = p.filters()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0i64;
    for c in e.containers.all() {
        let r = c.record();
        if r.state.status.is_live() || r.state.status == Status::Restarting {
            continue;
        }
        if !matches_filters(
            &e,
            &r,
            &filters.iter().filter(|(k, _)| k.as_str() == "label").map(|(k, v)| (k.clone(), v.clone())).collect(),
        )? {
            continue;
        }
        if let Some(until) = filters.get("until").and_then(|v| v.first()) {
            let t = parse_time(until)?;
            if skiff_common::timefmt::parse(&r.created).is_some_and(|c| c > t) {
                continue;
            }
        }
        let size = e.containers.size_rw(&r.id) as i64;
        if e.containers.remove(&r.id, false, false).await.is_ok() {
            deleted.push(r.id.clone());
            reclaimed += size;
        }
    }
    Ok(json(&serde_json::json!({ "ContainersDeleted": deleted, "SpaceReclaimed": reclaimed })))
}

pub async fn commit(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery, body: Bytes) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let container = p.string("container").ok_or_else(|| ApiError::bad_request("missing container"))?;
    let reference = match p.string("repo") {
        Some(repo) => {
            let r = skiff_image::Reference::parse_normalized(&repo)
                .map_err(|err| ApiError::bad_request(err.to_string()))?;
            Some(match p.string("tag") {
                Some(t) => r.with_tag(&t).map_err(|err| ApiError::bad_request(err.to_string()))?,
                None => r.with_default_tag(),
            })
        }
        None => None,
    };
    // The body may carry a config (null or empty: the container's own).
    let config: Option<bollard_stubs::models::ContainerConfig> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match json_value(&body)? {
            serde_json::Value::Null => None,
            v => Some(from_json_value(v)?),
        }
    };
    let opts = skiff_engine::container::commit::CommitOptions {
        reference,
        author: p.string("author"),
        comment: p.string("comment"),
        changes: p.all("changes").into_iter().filter(|c| !c.is_empty()).collect(),
        config,
        pause: p.bool("pause", true),
    };
    let id = e.containers.commit(&container, opts).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "Id": id }))).into_response())
}
