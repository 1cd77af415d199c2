//! Swarm mode: `/swarm*`, `/nodes*`, `/services*` (with their logs, framed as `docker logs`
//! frames a container's), `/tasks*`, `/secrets*` and `/configs*` through the [`SwarmBackend`];
//! `/plugins` as a daemon with none installed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use bollard_stubs::models::{NodeSpec, SwarmInitRequest, SwarmJoinRequest, SwarmSpec};

use super::{json, json_body};
use crate::backend::{BlobKind, ServiceAuth, SwarmBackend, TokenRotation};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

/// The swarm routes on `backend`.
pub fn routes<S: SwarmBackend>(backend: Arc<S>) -> Router {
    Router::new()
        .route("/swarm", get(inspect::<S>))
        .route("/swarm/init", post(init::<S>))
        .route("/swarm/join", post(join::<S>))
        .route("/swarm/leave", post(leave::<S>))
        .route("/swarm/update", post(update::<S>))
        .route("/swarm/unlockkey", get(unlock_key::<S>))
        .route("/swarm/unlock", post(unlock::<S>))
        .route("/nodes", get(nodes::<S>))
        .route("/nodes/{id}", get(node::<S>).delete(remove_node::<S>))
        .route("/nodes/{id}/update", post(update_node::<S>))
        .route("/services", get(services::<S>))
        .route("/services/create", post(create_service::<S>))
        .route("/services/{id}", get(service::<S>).delete(remove_service::<S>))
        .route("/services/{id}/update", post(update_service::<S>))
        .route("/services/{id}/logs", get(service_logs::<S>))
        .route("/tasks", get(tasks::<S>))
        .route("/tasks/{id}", get(task::<S>))
        .route("/tasks/{id}/logs", get(task_logs::<S>))
        .merge(blob_routes::<S>(BlobKind::Secret, "secrets"))
        .merge(blob_routes::<S>(BlobKind::Config, "configs"))
        .with_state(backend)
}

/// `/secrets*` or `/configs*`.
fn blob_routes<S: SwarmBackend>(kind: BlobKind, base: &str) -> Router<Arc<S>> {
    let list = move |State(s): State<Arc<S>>, RawQuery(q): RawQuery| async move {
        let p = Params::parse(q.as_deref());
        Ok::<_, ApiError>(json(&s.blobs(kind, p.get("filters")).await?))
    };
    let create = move |State(s): State<Arc<S>>, body: Bytes| async move {
        let spec: bollard_stubs::models::SecretSpec = json_body(&body)?;
        let id = s.create_blob(kind, spec).await?;
        let mut r = json(&serde_json::json!({ "ID": id }));
        *r.status_mut() = axum::http::StatusCode::CREATED;
        Ok::<_, ApiError>(r)
    };
    let inspect = move |State(s): State<Arc<S>>, Path(id): Path<String>| async move {
        Ok::<_, ApiError>(json(&s.blob(kind, &id).await?))
    };
    let remove = move |State(s): State<Arc<S>>, Path(id): Path<String>| async move {
        s.remove_blob(kind, &id).await?;
        Ok::<_, ApiError>(super::no_content())
    };
    let update = move |State(s): State<Arc<S>>, Path(id): Path<String>, RawQuery(q): RawQuery, body: Bytes| async move {
        let p = Params::parse(q.as_deref());
        let version = version(&p)?;
        let spec: bollard_stubs::models::SecretSpec = json_body(&body)?;
        s.update_blob(kind, &id, version, spec).await?;
        Ok::<_, ApiError>(super::ok_empty())
    };
    Router::new()
        .route(&format!("/{base}"), get(list))
        .route(&format!("/{base}/create"), post(create))
        .route(&format!("/{base}/{{id}}"), get(inspect).delete(remove))
        .route(&format!("/{base}/{{id}}/update"), post(update))
}

fn version(p: &Params) -> ApiResult<u64> {
    let v = p.get("version").ok_or_else(|| ApiError::bad_request("invalid swarm version ''"))?;
    v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid swarm version '{v}'")))
}

async fn inspect<S: SwarmBackend>(State(s): State<Arc<S>>) -> ApiResult<Response> {
    Ok(json(&s.inspect().await?))
}

async fn init<S: SwarmBackend>(State(s): State<Arc<S>>, body: Bytes) -> ApiResult<Response> {
    let mut req: SwarmInitRequest = json_body(&body)?;
    // `AutoLockManagers` travels beside the spec (the models leave it out): it is the spec's
    // `EncryptionConfig` to the cluster.
    let raw: serde_json::Value = json_body(&body)?;
    if raw.get("AutoLockManagers").and_then(serde_json::Value::as_bool) == Some(true) {
        let spec = req.spec.get_or_insert_with(Default::default);
        spec.encryption_config =
            Some(bollard_stubs::models::SwarmSpecEncryptionConfig { auto_lock_managers: Some(true) });
    }
    Ok(json(&s.init(req).await?))
}

async fn join<S: SwarmBackend>(State(s): State<Arc<S>>, body: Bytes) -> ApiResult<Response> {
    let req: SwarmJoinRequest = json_body(&body)?;
    if req.join_token.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("invalid join token"));
    }
    if req.remote_addrs.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::bad_request("at least 1 RemoteAddr is required to join"));
    }
    s.join(req).await?;
    Ok(super::ok_empty())
}

async fn leave<S: SwarmBackend>(State(s): State<Arc<S>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    s.leave(p.bool("force", false)).await?;
    Ok(super::ok_empty())
}

async fn update<S: SwarmBackend>(State(s): State<Arc<S>>, RawQuery(q): RawQuery, body: Bytes) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let version = version(&p)?;
    let spec: SwarmSpec = json_body(&body)?;
    let rotate = TokenRotation {
        worker: p.bool("rotateWorkerToken", false),
        manager: p.bool("rotateManagerToken", false),
        unlock_key: p.bool("rotateManagerUnlockKey", false),
    };
    s.update(version, spec, rotate).await?;
    Ok(super::ok_empty())
}

async fn unlock_key<S: SwarmBackend>(State(s): State<Arc<S>>) -> ApiResult<Response> {
    Ok(json(&serde_json::json!({ "UnlockKey": s.unlock_key().await? })))
}

async fn unlock<S: SwarmBackend>(State(s): State<Arc<S>>, body: Bytes) -> ApiResult<Response> {
    let v: serde_json::Value = json_body(&body)?;
    s.unlock(v.get("UnlockKey").and_then(|k| k.as_str()).unwrap_or("")).await?;
    Ok(super::ok_empty())
}

async fn nodes<S: SwarmBackend>(State(s): State<Arc<S>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    Ok(json(&s.nodes(p.get("filters")).await?))
}

async fn node<S: SwarmBackend>(State(s): State<Arc<S>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&s.node(&id).await?))
}

async fn update_node<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let version = version(&p)?;
    let spec: NodeSpec = json_body(&body)?;
    s.update_node(&id, version, spec).await?;
    Ok(super::ok_empty())
}

async fn remove_node<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    s.remove_node(&id, p.bool("force", false)).await?;
    Ok(super::ok_empty())
}

async fn services<S: SwarmBackend>(State(s): State<Arc<S>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    Ok(json(&s.services(p.get("filters"), p.bool("status", false)).await?))
}

async fn service<S: SwarmBackend>(State(s): State<Arc<S>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&s.service(&id).await?))
}

/// A service spec body. Go's decoder matches keys ignoring case, and the CLI sends the health
/// check as `Healthcheck` (its Go field) where the API definition says `HealthCheck`.
fn service_spec(body: &[u8]) -> ApiResult<bollard_stubs::models::ServiceSpec> {
    let mut v = super::json_value(body)?;
    if let Some(c) = v.pointer_mut("/TaskTemplate/ContainerSpec").and_then(serde_json::Value::as_object_mut)
        && !c.contains_key("HealthCheck")
        && let Some(h) = c.remove("Healthcheck")
    {
        c.insert("HealthCheck".into(), h);
    }
    super::from_json_value(v)
}

/// The client's `X-Registry-Auth`, if it sent one.
fn registry_auth(h: &axum::http::HeaderMap) -> Option<String> {
    h.get("X-Registry-Auth").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_string)
}

async fn create_service<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = service_spec(&body)?;
    let created = s.create_service(spec, registry_auth(&headers)).await?;
    let mut r = json(&created);
    *r.status_mut() = axum::http::StatusCode::CREATED;
    Ok(r)
}

async fn update_service<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let version = version(&p)?;
    let spec = service_spec(&body)?;
    let rollback = match p.get("rollback") {
        None | Some("") => false,
        Some("previous") => true,
        Some(other) => return Err(ApiError::bad_request(format!("unrecognized rollback option {other}"))),
    };
    let auth = match (registry_auth(&headers), p.get("registryAuthFrom")) {
        (Some(a), _) => ServiceAuth::Given(a),
        (None, None | Some("" | "spec")) => ServiceAuth::FromSpec,
        (None, Some("previous-spec")) => ServiceAuth::FromPreviousSpec,
        (None, Some(other)) => {
            return Err(ApiError::bad_request(format!("invalid registryAuthFrom value: {other}")));
        }
    };
    Ok(json(&s.update_service(&id, version, spec, rollback, auth).await?))
}

async fn remove_service<S: SwarmBackend>(State(s): State<Arc<S>>, Path(id): Path<String>) -> ApiResult<Response> {
    s.remove_service(&id).await?;
    Ok(super::ok_empty())
}

async fn tasks<S: SwarmBackend>(State(s): State<Arc<S>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    Ok(json(&s.tasks(p.get("filters")).await?))
}

async fn task<S: SwarmBackend>(State(s): State<Arc<S>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(&s.task(&id).await?))
}

async fn swarm_logs<S: SwarmBackend>(s: &S, id: &str, task: bool, q: Option<&str>) -> ApiResult<Response> {
    let p = Params::parse(q);
    let opts = super::containers::log_options(&p)?;
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let (tty, rx) = s.service_logs(id, task, opts).await?;
    Ok(super::containers::log_response(tty, rx, p.bool("timestamps", false), p.bool("details", false)))
}

async fn service_logs<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    swarm_logs(&*s, &id, false, q.as_deref()).await
}

async fn task_logs<S: SwarmBackend>(
    State(s): State<Arc<S>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    swarm_logs(&*s, &id, true, q.as_deref()).await
}

/// `GET /plugins`: none installed.
pub async fn plugins() -> Response {
    json(&serde_json::json!([]))
}

#[cfg(test)]
#[path = "swarm_tests.rs"]
pub(crate) mod tests;
