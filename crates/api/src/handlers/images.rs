//! `/images/...`, `/commit` is in containers. Image names contain slashes, so the routes under
//! `/images/` are dispatched here by their last segment.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use axum::routing::{get, post};
use skiff_engine::images::ImageFilters;
use tokio::sync::mpsc;

use super::json;
use crate::backend::ImageBackend;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

/// The image routes (and `/auth`) on `backend`.
pub fn routes<B: ImageBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/auth", post(auth::<B>))
        .route("/images/json", get(list::<B>))
        .route("/images/create", post(create::<B>))
        .route("/images/load", post(load::<B>))
        .route("/images/get", get(save_many::<B>))
        .route("/images/prune", post(prune::<B>))
        .route("/images/{*rest}", get(by_name::<B>).post(by_name::<B>).delete(by_name::<B>))
        .with_state(backend)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(skiff_engine::EngineError::internal(e.to_string()))
}

pub async fn list<B: ImageBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let filters = ImageFilters {
        dangling: f.get("dangling").and_then(|v| v.first()).map(|v| v == "true" || v == "1"),
        labels: f.get("label").cloned().unwrap_or_default(),
        references: f.get("reference").cloned().unwrap_or_default(),
        before: f.get("before").and_then(|v| v.first().cloned()),
        since: f.get("since").and_then(|v| v.first().cloned()),
        until: f.get("until").and_then(|v| v.first().cloned()),
    };
    for k in f.keys() {
        if !matches!(k.as_str(), "dangling" | "label" | "reference" | "before" | "since" | "until") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(json(&b.list(p.bool("all", false), &filters)?))
}

/// `POST /images/create`: import (`fromSrc`) or pull (`fromImage`).
pub async fn create<B: ImageBackend>(State(b): State<Arc<B>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    if let Some(src) = p.string("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad_request(format!(
                "importing from {src:?} needs network access; pass the archive in the request body (fromSrc=-)"
            )));
        }
        let reference = p.repo_tag()?;
        let changes: Vec<String> = p.all("changes").into_iter().filter(|c| !c.is_empty()).collect();
        let message = p.string("message");
        let reader = stream::BodyReader::new(req.into_body());
        let id = b.import(Box::new(reader), reference, changes, message, p.string("platform")).await?;
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(serde_json::json!({ "status": id })).await;
        drop(tx);
        return Ok(json_stream(rx));
    }
    let image =
        p.string("fromImage").ok_or_else(|| ApiError::bad_request("either fromSrc or fromImage must be given"))?;
    let r = skiff_engine::types::Reference::parse_normalized(&image)
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    let r = match p.string("tag") {
        Some(t) if r.tag().is_none() && r.digest().is_none() => {
            if t.starts_with("sha256:") {
                r.with_digest(t.parse().map_err(|_| ApiError::bad_request(format!("invalid digest {t}")))?)
            } else {
                r.with_tag(&t).map_err(|err| ApiError::bad_request(err.to_string()))?
            }
        }
        _ => r.with_default_tag(),
    };
    let creds = registry_auth(req.headers());
    let platform = p.string("platform");
    if let Some(pl) = platform.as_deref().filter(|p| !p.is_empty()) {
        // A malformed platform is the request's fault, before any progress is streamed.
        skiff_engine::types::Platform::parse(pl).map_err(ApiError::bad_request)?;
    }
    registry_stream(move |sink| async move { b.pull(&r, platform.as_deref(), creds, sink).await }).await
}

fn json_stream(rx: mpsc::Receiver<serde_json::Value>) -> Response {
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub async fn load<B: ImageBackend>(State(b): State<Arc<B>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let quiet = p.bool("quiet", false);
    let reader = stream::BodyReader::new(req.into_body());
    let res = b.load(Box::new(reader)).await;
    // As dockerd: the answer is a JSON stream whatever happens, an archive that cannot be
    // loaded ends it with an error message (docker-py raises ImageLoadError on it).
    let lines: Vec<serde_json::Value> = match res {
        Ok(res) => res.lines.into_iter().map(|l| serde_json::json!({ "stream": format!("{l}\n") })).collect(),
        Err(err) => vec![serde_json::json!({ "errorDetail": { "message": err.message }, "error": err.message })],
    };
    let (tx, rx) = mpsc::channel(lines.len().max(1));
    for l in lines {
        let _ = tx.try_send(l);
    }
    drop(tx);
    let _ = quiet;
    Ok(json_stream(rx))
}

fn save_response<B: ImageBackend>(b: Arc<B>, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    let items = b.save_items(&names)?;
    let body = stream::blocking_body(move |w| b.save(&items, w));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn save_many<B: ImageBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    save_response(b, p.all("names"))
}

pub async fn prune<B: ImageBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let dangling_only = f.get("dangling").and_then(|v| v.first()).is_none_or(|v| v == "true" || v == "1");
    Ok(json(&b.prune(!dangling_only)?))
}

/// `/images/{name}/{json,history,tag,push,get}` and `DELETE /images/{name}`.
pub async fn by_name<B: ImageBackend>(
    State(b): State<Arc<B>>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let method = req.method().clone();
    if method == Method::DELETE {
        let out = b.remove(&rest, p.bool("force", false))?;
        return Ok(json(&out));
    }
    let (name, action) =
        rest.rsplit_once('/').ok_or_else(|| ApiError(skiff_engine::EngineError::not_found("page not found")))?;
    match (method, action) {
        (Method::GET, "json") => {
            let mut doc = serde_json::to_value(b.inspect(name)?).unwrap_or_default();
            crate::shape::image_inspect(&mut doc);
            Ok(json(&doc))
        }
        (Method::GET, "history") => Ok(json(&b.history(name)?)),
        (Method::GET, "get") => save_response(b, vec![name.to_string()]),
        (Method::POST, "tag") => {
            let repo = p
                .string("repo")
                .ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
            b.tag(name, &repo, p.get("tag"))?;
            Ok(Response::builder().status(201).body(Body::empty()).map_err(internal)?)
        }
        (Method::POST, "push") => {
            let r = skiff_engine::types::Reference::parse_normalized(name)
                .map_err(|err| ApiError::bad_request(err.to_string()))?;
            let r = match p.string("tag").filter(|t| !t.is_empty()) {
                Some(t) => r.with_tag(&t).map_err(|err| ApiError::bad_request(err.to_string()))?,
                None => r,
            };
            let creds = registry_auth(req.headers());
            registry_stream(move |sink| async move { b.push(&r, creds, sink).await }).await
        }
        _ => Err(ApiError(skiff_engine::EngineError::not_found("page not found"))),
    }
}

/// Credentials the docker CLI sends in `X-Registry-Auth`.
fn registry_auth(h: &axum::http::HeaderMap) -> Option<skiff_engine::types::Credentials> {
    h.get("X-Registry-Auth").and_then(|v| v.to_str().ok()).and_then(skiff_engine::types::Credentials::from_header)
}

fn progress_bar(cur: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (cur.min(total) * width).checked_div(total).unwrap_or(width).min(width);
    let mut bar = "=".repeat(filled as usize);
    if filled < width {
        bar.push('>');
        bar.push_str(&" ".repeat((width - filled - 1) as usize));
    }
    format!("[{bar}] {}/{}", human_size(cur), human_size(total))
}

/// Progress bars' sizes, as Docker's (`units.HumanSize`: four significant digits).
fn human_size(n: u64) -> String {
    skiff_common::units::human_size(n as f64, 4)
}

/// Docker's JSON progress message for one event.
fn progress_json(p: skiff_engine::types::Progress) -> serde_json::Value {
    use skiff_engine::types::Progress as P;
    match p {
        P::Status(s) => serde_json::json!({ "status": s }),
        P::Item { id, status, current, total } => match (current, total) {
            (Some(c), Some(t)) => serde_json::json!({
                "status": status,
                "progressDetail": { "current": c, "total": t },
                "progress": progress_bar(c, t),
                "id": id,
            }),
            _ => serde_json::json!({ "status": status, "progressDetail": {}, "id": id }),
        },
        P::Aux(v) => serde_json::json!({ "progressDetail": {}, "aux": v }),
    }
}

/// Runs a pull or push and streams its progress as Docker's JSON messages. As in moby, an
/// error before the first message is an HTTP error; after it, an `errorDetail` message.
async fn registry_stream<F, Fut>(run: F) -> ApiResult<Response>
where
    F: FnOnce(skiff_engine::types::Sink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = skiff_engine::error::Result<()>> + Send + 'static,
{
    let (utx, mut urx) = mpsc::unbounded_channel::<serde_json::Value>();
    let sink: skiff_engine::types::Sink = Arc::new(move |p| {
        let _ = utx.send(progress_json(p));
    });
    // Dropped (and so stopped) when its client goes, as dockerd cancels a pull or push whose
    // request ends: the relay below holds it, and ends when the response's reader is gone.
    let mut task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(run(sink)));
    // The task's end closes the progress channel (it drops the sink) a moment before its
    // result is ready: a closed channel means "wait for the result", never "stream".
    // `Some(result)` once the task's result is in hand. An error with no progress said yet is
    // the request's HTTP error; after progress (dockerd has answered 200 by then), it ends the
    // stream.
    let mut finished: Option<Option<String>> = None;
    let first = tokio::select! {
        biased;
        r = &mut task => {
            match r.map_err(internal)? {
                Err(e) if urx.is_empty() => return Err(e.into()),
                Err(e) => finished = Some(Some(e.to_string())),
                Ok(()) => finished = Some(None),
            }
            urx.recv().await
        }
        m = urx.recv() => match m {
            Some(m) => Some(m),
            None => {
                (&mut task).await.map_err(internal)??;
                finished = Some(None);
                None
            }
        },
    };
    let (tx, rx) = mpsc::channel(64);
    crate::tasks::spawn(async move {
        if let Some(m) = first
            && tx.send(m).await.is_err()
        {
            return;
        }
        // The client's leaving (the response's reader dropped) ends this relay at once, and
        // with it the task, even while no progress comes.
        loop {
            let m = tokio::select! {
                m = urx.recv() => m,
                () = tx.closed() => return,
            };
            let Some(m) = m else { break };
            if tx.send(m).await.is_err() {
                return;
            }
        }
        let err = if let Some(err) = finished {
            err
        } else {
            let r = tokio::select! {
                r = &mut task => r,
                () = tx.closed() => return,
            };
            match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(m) = err {
            let _ = tx.send(serde_json::json!({ "errorDetail": { "message": m }, "error": m })).await;
        }
    });
    Ok(json_stream(rx))
}

/// `POST /auth`: checks credentials against a registry.
pub async fn auth<B: ImageBackend>(State(b): State<Arc<B>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let c: skiff_engine::types::Credentials = super::json_body(&body)?;
    let server = c.server_address.clone();
    b.login(&server, c).await?;
    Ok(json(&serde_json::json!({ "Status": "Login Succeeded", "IdentityToken": "" })))
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
