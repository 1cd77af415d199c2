//! skiff-api: the Docker Engine API over HTTP/1.1 on a unix socket.
//!
//! A request is version-checked and stripped of its `/v1.NN` prefix ([`version`]), routed to a
//! handler that parses it into a typed call on the engine, and the engine's answer (or error,
//! mapped to a status in [`error`]) becomes the response. Attach and exec streams hijack the
//! connection ([`stream`]).

// No function past what a reader holds (clippy.toml sets the threshold).

pub mod backend;
mod content_type;
pub mod error;
pub mod handlers;
pub mod params;
pub mod shape;
pub mod stream;
pub mod tasks;
pub mod version;

#[cfg(test)]
mod test_support;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use skiff_engine::Engine;
use tasks::ApiTasks;
use tokio::net::UnixListener;
use tower::ServiceExt;
use tracing::Instrument;

use handlers::{containers as c, exec, images, networks as n, system, volumes as v};

pub(crate) async fn not_found(body: Body) -> Response {
    // Read what the client sends (up to 1 MiB) before answering: a client still writing its
    // body to a closed connection sees a broken pipe instead of the 404.
    let _ = axum::body::to_bytes(body, 1 << 20).await;
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "message": "page not found" }))).into_response()
}

/// The Engine API routes.
pub fn router<S: backend::SwarmBackend, A: backend::AnalysisBackend>(
    engine: Arc<Engine>,
    swarm: Arc<S>,
    analysis: Arc<A>,
) -> Router {
    Router::new()
        .route("/plugins", get(handlers::swarm::plugins))
        .fallback(not_found)
        .merge(c::routes(engine.clone()))
        .merge(n::routes(engine.clone(), swarm.clone()))
        .merge(v::routes(engine.clone()))
        .merge(exec::routes(engine.clone()))
        .merge(system::routes(engine.clone()))
        .merge(system::info_routes(engine.clone(), swarm.clone()))
        .merge(handlers::swarm::routes(swarm))
        .merge(images::routes(engine.clone()))
        .merge(handlers::build::routes(engine))
        .merge(handlers::analysis::routes(analysis))
        .layer(DefaultBodyLimit::max(16 << 20))
}

/// Handles one request: version check, route, common headers; in a span that names it, with
/// the server's tasks current for what the handler leaves running.
async fn handle(router: Router, tasks: ApiTasks, req: Request<Incoming>) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::debug_span!("request", %method, %path);
    let req = req.map(Body::new);
    let mut resp = tasks
        .scope(
            async {
                match version::strip(req) {
                    Ok(req) => match content_type::checked(req).await {
                        Ok(req) => router.oneshot(req).await.unwrap_or_else(|e| match e {}),
                        Err(r) => *r,
                    },
                    Err(r) => *r,
                }
            }
            .instrument(span.clone()),
        )
        .await;
    span.in_scope(|| tracing::debug!(status = resp.status().as_u16(), "request"));
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(skiff_engine::system::API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Server", HeaderValue::from_static(concat!("skiff/", env!("CARGO_PKG_VERSION"), " (linux)")));
    resp
}

/// Serves the API on a listening unix socket until `shutdown` resolves.
pub async fn serve<S: backend::SwarmBackend, A: backend::AnalysisBackend>(
    listeners: Vec<UnixListener>,
    engine: Arc<Engine>,
    (swarm, analysis): (Arc<S>, Arc<A>),
    shutdown: impl std::future::Future<Output = ()>,
) {
    let app = router(engine, swarm, analysis);
    tokio::pin!(shutdown);
    // One accept loop per socket (dockerd's repeated -H), all feeding the same service.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::net::UnixStream>(64);
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        let tx = tx.clone();
        accepting.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        if tx.send(s).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    // Connections, and what their requests left running, are owned here: at shutdown the
    // server stops accepting, lets requests in flight finish, ends streams, and waits (bounded)
    // before the engine shuts down.
    let tasks = ApiTasks::default();
    loop {
        let stream = tokio::select! {
            s = rx.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let (app, handler_tasks) = (app.clone(), tasks.clone());
        let conn_tasks = tasks.clone();
        tasks.track(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (app, tasks) = (app.clone(), handler_tasks.clone());
                async move { Ok::<_, Infallible>(handle(app, tasks, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                () = conn_tasks.cancelled() => {
                    // Finish the request in flight, then close (an idle keep-alive closes now).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    accepting.abort_all();
    let left = tasks.shutdown(SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::warn!(tasks = left, "API connections or streams still open at shutdown");
    }
}

/// How long the server waits at shutdown for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
