//! `/images/...`, `/commit` is in containers. Image names contain slashes, so the routes under
//! `/images/` are dispatched here by their last segment.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use skiff_engine::Engine;
use skiff_engine::images::ImageFilters;
use tokio::sync::mpsc;

use super::json;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(skiff_engine::EngineError::internal(e.to_string()))
}

pub async fn list(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let filters = ImageFilters {
        dangling: f.get("dangling").and_then(|v| v.first()).map(|v| v == "true" || v == "1"),
        labels: f.get("label").cloned().unwrap_or_default(),
        references: f.get("reference").cloned().unwrap_or_default(),
        before: f.get("before").and_then(|v| v.first().cloned()),
        since: f.get("since").and_then(|v| v.first().cloned()),
    };
    for k in f.keys() {
        if !matches!(k.as_str(), "dangling" | "label" | "reference" | "before" | "since") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(json(&e.images.list(p.bool("all", false), &filters, &e.containers)?))
}

/// `POST /images/create`: import (`fromSrc`) or pull (`fromImage`).
pub async fn create(State(e): State<Arc<Engine>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    if let Some(src) = p.string("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad_request(format!(
                "importing from {src:?} needs network access; pass the archive in the request body (fromSrc=-)"
            )));
        }
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
        let changes: Vec<String> = p.all("changes").into_iter().filter(|c| !c.is_empty()).collect();
        let message = p.string("message");
        let mut reader = stream::BodyReader::new(req.into_body());
        let id = tokio::task::spawn_blocking(move || e.images.import(&mut reader, reference, &changes, message))
            .await
            .map_err(internal)??;
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(serde_json::json!({ "status": id })).await;
        drop(tx);
        return Ok(json_stream(rx));
    }
    let image =
        p.string("fromImage").ok_or_else(|| ApiError::bad_request("either fromSrc or fromImage must be given"))?;
    let r = skiff_image::Reference::parse_normalized(&image).map_err(|err| ApiError::bad_request(err.to_string()))?;
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
    Err(ApiError(skiff_engine::EngineError::not_found(format!(
        "pull access denied for {}: this daemon cannot pull from registries yet; load or import the image instead",
        r.familiar_repository()
    ))))
}

fn json_stream(rx: mpsc::Receiver<serde_json::Value>) -> Response {
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub async fn load(State(e): State<Arc<Engine>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let quiet = p.bool("quiet", false);
    let reader = stream::BodyReader::new(req.into_body());
    let res = tokio::task::spawn_blocking(move || e.images.load(reader)).await.map_err(internal)??;
    let (tx, rx) = mpsc::channel(res.lines.len().max(1));
    for l in res.lines {
        let _ = tx.try_send(serde_json::json!({ "stream": format!("{l}\n") }));
    }
    drop(tx);
    let _ = quiet;
    Ok(json_stream(rx))
}

fn save_response(e: Arc<Engine>, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    for n in &names {
        e.images.store.resolve(n).map_err(|err| ApiError(err.into()))?;
    }
    let body = stream::blocking_body(move |w| e.images.save(&names, w).map(|_| ()));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn save_many(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    save_response(e, p.all("names"))
}

pub async fn prune(State(e): State<Arc<Engine>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let f = p.filters()?;
    let dangling_only = f.get("dangling").and_then(|v| v.first()).is_none_or(|v| v == "true" || v == "1");
    Ok(json(&e.images.prune(!dangling_only, &e.containers)?))
}

/// `/images/{name}/{json,history,tag,push,get}` and `DELETE /images/{name}`.
pub async fn by_name(State(e): State<Arc<Engine>>, Path(rest): Path<String>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let method = req.method().clone();
    if method == Method::DELETE {
        let out = e.images.remove(&rest, p.bool("force", false), &e.containers)?;
        return Ok(json(&out));
    }
    let (name, action) =
        rest.rsplit_once('/').ok_or_else(|| ApiError(skiff_engine::EngineError::not_found("page not found")))?;
    match (method, action) {
        (Method::GET, "json") => Ok(json(&e.images.inspect(name)?)),
        (Method::GET, "history") => Ok(json(&e.images.history(name)?)),
        (Method::GET, "get") => save_response(e, vec![name.to_string()]),
        (Method::POST, "tag") => {
            let repo = p
                .string("repo")
                .ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
            e.images.tag(name, &repo, p.get("tag"))?;
            Ok(Response::builder().status(201).body(Body::empty()).map_err(internal)?)
        }
        (Method::POST, "push") => Err(ApiError(skiff_engine::EngineError::new(
            skiff_engine::Kind::Unavailable,
            format!("cannot push {name}: this daemon cannot push to registries yet"),
        ))),
        _ => Err(ApiError(skiff_engine::EngineError::not_found("page not found"))),
    }
}
