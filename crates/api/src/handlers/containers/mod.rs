//! `/containers/...` and `/commit`, over a [`ContainerBackend`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post};
use base64::Engine as _;
use bollard_stubs::models::{ContainerCreateBody, ContainerCreateResponse, ContainerUpdateBody, ContainerWaitResponse};
use skiff_engine::container::WaitCondition;
use skiff_engine::container::list::ListOptions;
use skiff_engine::container::logs::{LogOptions, parse_time};
use skiff_engine::types::Stream;
use skiff_engine::types::Streams;
use tokio::sync::mpsc;

use super::{from_json_value, json, json_body, json_value, no_content};
use crate::backend::ContainerBackend;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;
use crate::version::{ApiVersion, adapt};
use skiff_engine::container::RemoveRefused;

/// The container routes on `backend` (merged into the API's router).
pub fn routes<B: ContainerBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/containers/create", post(create::<B>))
        .route("/containers/json", get(list::<B>))
        .route("/containers/prune", post(prune::<B>))
        .route("/containers/{id}", delete(remove::<B>))
        .route("/containers/{id}/json", get(inspect::<B>))
        .route("/containers/{id}/start", post(start::<B>))
        .route("/containers/{id}/stop", post(stop::<B>))
        .route("/containers/{id}/restart", post(restart::<B>))
        .route("/containers/{id}/kill", post(kill::<B>))
        .route("/containers/{id}/pause", post(pause::<B>))
        .route("/containers/{id}/unpause", post(unpause::<B>))
        .route("/containers/{id}/rename", post(rename::<B>))
        .route("/containers/{id}/wait", post(wait::<B>))
        .route("/containers/{id}/attach", post(attach::<B>))
        .route("/containers/{id}/logs", get(logs::<B>))
        .route("/containers/{id}/resize", post(resize::<B>))
        .route("/containers/{id}/top", get(top::<B>))
        .route("/containers/{id}/changes", get(changes::<B>))
        .route("/containers/{id}/export", get(export::<B>))
        .route("/containers/{id}/stats", get(stats::<B>))
        .route("/containers/{id}/update", post(update::<B>))
        .route("/containers/{id}/archive", head(archive_head::<B>).get(archive_get::<B>).put(archive_put::<B>))
        .route("/containers/{id}/{*link}", delete(remove_link::<B>).fallback(crate::not_found))
        .route("/commit", post(commit::<B>))
        .with_state(backend)
}

pub async fn create<B: ContainerBackend>(
    State(b): State<Arc<B>>,
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
    adapt::container_create(v, req.host_config.get_or_insert_with(Default::default), b.cgroup_v2())?;
    let opts = skiff_engine::container::create::CreateOptions {
        platform: p.string("platform").filter(|s| !s.is_empty()),
        read_only_non_recursive: adapt::read_only_binds_non_recursive(v),
    };
    let (id, warnings) = b.create(p.string("name"), req, opts).await?;
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

pub async fn list<B: ContainerBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let opts = ListOptions {
        all: p.bool("all", false),
        size: p.bool("size", false),
        limit: p.int("limit")?.filter(|l| *l > 0).map(|l| l as usize),
        filters: p.filters()?,
    };
    Ok(json(&b.list(opts)?))
}

pub async fn inspect<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let api = v;
    let mut doc = serde_json::to_value(b.inspect(&id, p.bool("size", false))?)
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))?;
    crate::shape::container_inspect(&mut doc);
    adapt::container_inspect(api, &mut doc);
    Ok(json(&doc))
}

pub async fn start<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    b.start(&id).await?;
    Ok(no_content())
}

pub async fn stop<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    b.stop(&id, p.int("t")?, p.string("signal")).await?;
    Ok(no_content())
}

pub async fn restart<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    b.restart(&id, p.int("t")?, p.string("signal")).await?;
    Ok(no_content())
}

pub async fn kill<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    match b.kill(&id, p.string("signal")).await {
        Err(err) if err.kind == skiff_engine::Kind::Conflict && adapt::kill_not_running_is_ok(v) => {}
        r => r?,
    }
    Ok(no_content())
}

pub async fn pause<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    b.pause(&id, true).await?;
    Ok(no_content())
}

pub async fn unpause<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    b.pause(&id, false).await?;
    Ok(no_content())
}

pub async fn remove<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    if p.bool("link", false) {
        return Err(ApiError::bad_request(format!(
            "Conflict, cannot remove the default link name of the container /{id}"
        )));
    }
    b.remove(&id, p.bool("force", false), p.bool("v", false)).await.map_err(|mut e| {
        // A client older than 1.44 was written against dockerd's older words.
        if adapt::legacy_error_words(v)
            && let Some(refused) = e.source.as_deref().and_then(|s| s.downcast_ref::<RemoveRefused>())
        {
            e.message = refused.legacy_words();
        }
        e
    })?;
    Ok(no_content())
}

/// `DELETE /containers/PARENT/ALIAS?link=1` (`docker rm --link`): a legacy link.
pub async fn remove_link<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path((id, link)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    if !p.bool("link", false) || link.contains('/') {
        return Err(ApiError(skiff_engine::EngineError::no_container(&format!("{id}/{link}"))));
    }
    b.remove_link(&id, &link)?;
    Ok(no_content())
}

pub async fn rename<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let name = p.string("name").ok_or_else(|| ApiError::bad_request("missing name"))?;
    b.rename(&id, &name)?;
    Ok(no_content())
}

pub async fn wait<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let condition: WaitCondition = p.string("condition").unwrap_or_default().parse()?;
    // Resolve now so an unknown container is a 404, then answer headers at once and the
    // status when it comes (the CLI waits on this while it starts the container).
    b.exists(&id)?;
    let (tx, rx) = mpsc::channel(1);
    crate::tasks::spawn(async move {
        let body = match b.wait(&id, condition).await {
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
    crate::tasks::spawn(async move {
        match on_upgrade.await {
            Ok(up) => stream::relay(hyper_util::rt::TokioIo::new(up), handle, detach).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    stream::upgraded_response(handle_tty)
}

pub async fn attach<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
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
        let (tty, rx) =
            b.logs(&id, LogOptions { stdout: streams.stdout, stderr: streams.stderr, ..Default::default() })?;
        if req.headers().get(header::UPGRADE).is_none() {
            return Ok(log_response(tty, rx, false, false));
        }
        // A client that asked to upgrade reads the raw connection until it closes (as from
        // dockerd's hijacked connection): the log, unframed by HTTP, then the end.
        let on_upgrade = hyper::upgrade::on(req);
        crate::tasks::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                stream::write_log_and_close(hyper_util::rt::TokioIo::new(up), tty, rx).await;
            }
        });
        return Ok(stream::upgraded_response(tty));
    }
    let handle = b.attach(&id, streams).await?;
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

pub(crate) fn log_response(
    tty: bool,
    mut rx: mpsc::Receiver<skiff_engine::container::logs::LogLine>,
    timestamps: bool,
    details: bool,
) -> Response {
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    crate::tasks::spawn(async move {
        loop {
            // A client that leaves ends the stream at once, not at the next line (a followed
            // log that stays quiet would otherwise keep its reader forever).
            let l = tokio::select! {
                l = rx.recv() => match l {
                    Some(l) => l,
                    None => return,
                },
                () = tx.closed() => return,
            };
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

/// `docker logs`' (and `service logs`') query: streams, `tail`, `since`, `until`, `follow`.
pub(crate) fn log_options(p: &Params) -> ApiResult<LogOptions> {
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
    Ok(LogOptions {
        stdout: p.bool("stdout", false),
        stderr: p.bool("stderr", false),
        follow: p.bool("follow", false),
        tail,
        since,
        until,
    })
}

pub async fn logs<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let (tty, rx) = b.logs(&id, log_options(&p)?)?;
    Ok(log_response(tty, rx, p.bool("timestamps", false), p.bool("details", false)))
}

pub async fn resize<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let (h, w) = p.terminal_size()?;
    b.resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn top<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&b.top(&id)?))
}

pub async fn changes<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&b.changes(&id).await?))
}

pub async fn export<B: ContainerBackend>(State(b): State<Arc<B>>, Path(id): Path<String>) -> ApiResult<Response> {
    b.exists(&id)?;
    let body = stream::blocking_body(move |w| b.export(&id, w));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn stats<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let streaming = p.bool("stream", true);
    let one_shot = p.bool("one-shot", false);
    b.exists(&id)?;
    let (tx, rx) = mpsc::channel(4);
    crate::tasks::spawn(async move {
        let mut pre = None;
        if !streaming && !one_shot {
            // Two readings a second apart, so the client can compute CPU usage.
            pre = b.sample(&id).ok().flatten();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        loop {
            let cur = b.sample(&id).ok().flatten();
            let Ok(resp) = b.stats(&id, cur.as_ref(), pre.as_ref()) else {
                return;
            };
            let mut v = serde_json::to_value(&resp).unwrap_or_default();
            if let (Some(c), Some(obj)) = (cur.as_ref(), v.as_object_mut())
                && let Some(extra) = b.skiff_stats(c, pre.as_ref())
            {
                obj.insert("skiff".into(), extra);
            }
            if tx.send(v).await.is_err() || !streaming || cur.is_none() {
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

pub async fn update<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut req: ContainerUpdateBody = json_body(&body)?;
    adapt::container_update(v, &mut req);
    let warnings = b.update(&id, req).await?;
    Ok(json(&serde_json::json!({ "Warnings": warnings })))
}

fn stat_header(s: &skiff_engine::container::archive::PathStat) -> HeaderValue {
    let j = serde_json::to_vec(s).unwrap_or_default();
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(j)).unwrap_or(HeaderValue::from_static(""))
}

pub async fn archive_head<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let st = b.stat_path(&id, &path).await?;
    let mut h = HeaderMap::new();
    h.insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok((StatusCode::OK, h).into_response())
}

pub async fn archive_get<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let st = b.stat_path(&id, &path).await?;
    let body = stream::blocking_body(move |w| b.archive_path(&id, &path, w).map(|_| ()));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok(r)
}

pub async fn archive_put<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let path = p.string("path").ok_or_else(|| ApiError::bad_request("missing path"))?;
    let copy_ids = p.bool("copyUIDGID", false);
    let no_overwrite = p.bool("noOverwriteDirNonDir", false);
    let reader = stream::BodyReader::new(req.into_body());
    b.extract_to(&id, &path, Box::new(reader), copy_ids, no_overwrite).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn prune<B: ContainerBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let report = b.prune(p.filters()?).await?;
    Ok(json(&serde_json::json!({ "ContainersDeleted": report.deleted, "SpaceReclaimed": report.reclaimed })))
}

pub async fn commit<B: ContainerBackend>(
    State(b): State<Arc<B>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    // The body first, as dockerd reads it: it may carry a config (null or empty: the
    // container's own).
    let config: Option<bollard_stubs::models::ContainerConfig> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match json_value(&body)? {
            serde_json::Value::Null => None,
            v => Some(from_json_value(v)?),
        }
    };
    let container = p.string("container").ok_or_else(|| ApiError::bad_request("missing container"))?;
    let reference = p.repo_tag()?;
    let opts = skiff_engine::container::commit::CommitOptions {
        reference,
        author: p.string("author"),
        comment: p.string("comment"),
        changes: p.all("changes").into_iter().filter(|c| !c.is_empty()).collect(),
        config,
        pause: p.bool("pause", true),
    };
    let id = b.commit(&container, opts).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "Id": id }))).into_response())
}

#[cfg(test)]
mod tests;
