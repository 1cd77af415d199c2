//! `POST /build` (the classic builder's API: a tar context in, JSON messages out) and
//! `POST /build/prune`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use skiff_engine::build::{BuildOut, BuildRequest};
use tokio::sync::mpsc;

use super::json;
use crate::backend::BuildBackend;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

/// The build routes on `backend`.
pub fn routes<B: BuildBackend>(backend: Arc<B>) -> Router {
    Router::new().route("/build", post(build::<B>)).route("/build/prune", post(prune::<B>)).with_state(backend)
}

/// The build's parameters from the query, checked: what skiff's classic builder cannot do is
/// refused before the context is read.
fn build_request(p: &Params, experimental: bool) -> ApiResult<BuildRequest> {
    if p.string("version").as_deref() == Some("2") {
        return Err(ApiError::bad_request("BuildKit (version=2) is not supported; use the classic builder API"));
    }
    if p.bool("squash", false) {
        // dockerd's answer without experimental mode; skiff has no squashing builder at all.
        return Err(ApiError::bad_request(if experimental {
            "squash is not supported by skiff's builder (build without --squash, or squash with a multi-stage COPY --from)"
        } else {
            "squash is only supported with experimental mode"
        }));
    }
    if let Some(r) = p.string("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "remote build contexts ({r}) need network access; send a context tar"
        )));
    }
    if let Some(pl) = p.string("platform").filter(|s| !s.is_empty()) {
        let host = skiff_engine::types::Platform::host();
        let want = skiff_engine::types::Platform::parse(&pl).map_err(ApiError::bad_request)?;
        if !want.matches(&host) {
            return Err(ApiError::bad_request(format!(
                "only the host platform ({}/{}) can be built, not {pl}",
                host.os, host.architecture
            )));
        }
    }
    let mut tags = Vec::new();
    for t in p.all("t") {
        let r = skiff_engine::types::Reference::parse_normalized(&t)
            .map_err(|err| ApiError::bad_request(format!("invalid tag {t:?}: {err}")))?;
        tags.push(r.with_default_tag());
    }
    Ok(BuildRequest {
        context: std::path::PathBuf::new(),
        dockerfile: p.string("dockerfile").unwrap_or_else(|| "Dockerfile".into()),
        tags,
        build_args: p.json("buildargs")?,
        labels: p.json("labels")?,
        no_cache: p.bool("nocache", false),
        target: p.string("target").filter(|t| !t.is_empty()),
        pull: p.bool("pull", false),
        force_rm: p.bool("forcerm", false),
        remove: p.bool("rm", true) || p.bool("forcerm", false),
        network: p.string("networkmode").filter(|n| !n.is_empty() && n != "default"),
        secrets: None,
        cancel: Default::default(),
        extra_hosts: p
            .all("extrahosts")
            .iter()
            .flat_map(|h| h.split(','))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        run_limits: skiff_engine::build::RunLimits {
            memory: p.int("memory")?.filter(|v| *v != 0),
            memory_swap: p.int("memswap")?.filter(|v| *v != 0),
            cpu_shares: p.int("cpushares")?.filter(|v| *v != 0),
            cpuset_cpus: p.string("cpusetcpus"),
            cpu_period: p.int("cpuperiod")?.filter(|v| *v != 0),
            cpu_quota: p.int("cpuquota")?.filter(|v| *v != 0),
            shm_size: p.int("shmsize")?.filter(|v| *v > 0),
        },
        cache_from: p.json("cachefrom")?,
    })
}

pub async fn build<B: BuildBackend>(State(b): State<Arc<B>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    let quiet = p.bool("q", false);
    let breq = build_request(&p, b.experimental())?;
    // The context: untrusted tar (maybe compressed), unpacked by the engine path-safely into a
    // private directory (with `skiff build --secret`'s secrets moved out of it).
    let reader = stream::BodyReader::new(req.into_body());
    let ctx = b.unpack_context(Box::new(reader)).await?;
    let (dir, secrets) = (ctx.dir.clone(), ctx.secrets.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let breq = BuildRequest { context: dir.clone(), secrets: secrets.clone(), cancel: cancel.clone(), ..breq };
    let (tx, rx) = mpsc::channel(256);
    let (utx, mut urx) = mpsc::unbounded_channel::<serde_json::Value>();
    // `-q`: the steps' output is held back (and sent only if the build fails); a successful
    // build says just its image ID, as dockerd does.
    let held = Arc::new(std::sync::Mutex::new(String::new()));
    let out: skiff_engine::build::Out = {
        let held = held.clone();
        Arc::new(move |o| {
            let v = match o {
                BuildOut::Stream(s) if !quiet => serde_json::json!({ "stream": s }),
                BuildOut::Stream(s) => {
                    held.lock().unwrap_or_else(|p| p.into_inner()).push_str(&s);
                    return;
                }
                BuildOut::Aux(a) => serde_json::json!({ "aux": a }),
            };
            let _ = utx.send(v);
        })
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    {
        let b = b.clone();
        crate::tasks::spawn(async move {
            let _ = done_tx.send(b.build(breq, out).await);
        });
    }
    let cleanup = move || ctx.remove();
    let mut first_line = None;
    // As dockerd: a build that fails before saying anything (a bad Dockerfile, an unknown
    // target) is an HTTP error; once output has begun, errors come in the stream.
    // The build's result if it ended before saying anything (its output channel closes before
    // the result arrives, so wait for the result then).
    let early = tokio::select! {
        biased;
        r = &mut done_rx => Some(r),
        v = urx.recv() => match v {
            Some(v) => {
                first_line = Some(v);
                None
            }
            None => Some((&mut done_rx).await),
        },
    };
    if let Some(r) = early {
        let r = r.unwrap_or_else(|_| Err(skiff_engine::EngineError::internal("the build ended without a result")));
        if urx.is_empty()
            && let Err(err) = r
        {
            let _ = tokio::task::spawn_blocking(cleanup).await;
            return Err(ApiError(err));
        }
        let (t, rx) = tokio::sync::oneshot::channel();
        let _ = t.send(r);
        done_rx = rx;
        first_line = urx.recv().await;
    }
    let first = first_line;
    crate::tasks::spawn(async move {
        // A client that goes away (its response dropped) cancels the build, whether or not
        // the build is saying anything at the time.
        let fwd = async {
            if let Some(v) = first
                && tx.send(v).await.is_err()
            {
                cancel.cancel();
                return;
            }
            loop {
                tokio::select! {
                    v = urx.recv() => match v {
                        Some(v) => {
                            if tx.send(v).await.is_err() {
                                cancel.cancel();
                                break;
                            }
                        }
                        None => break,
                    },
                    () = tx.closed() => {
                        cancel.cancel();
                        break;
                    }
                }
            }
        };
        let (r, _) = tokio::join!(done_rx, fwd);
        let err = match r {
            Ok(Ok(img)) => {
                if quiet {
                    let _ = tx.send(serde_json::json!({ "stream": format!("{}\n", img.id) })).await;
                }
                None
            }
            Ok(Err(err)) => Some(err),
            Err(_) => Some(skiff_engine::EngineError::internal("the build ended without a result")),
        };
        if let Some(err) = err {
            let text = std::mem::take(&mut *held.lock().unwrap_or_else(|p| p.into_inner()));
            if quiet && !text.is_empty() {
                let _ = tx.send(serde_json::json!({ "stream": text })).await;
            }
            let m = err.message;
            let detail = match err.code {
                Some(c) => serde_json::json!({ "code": c, "message": m }),
                None => serde_json::json!({ "message": m }),
            };
            let _ = tx.send(serde_json::json!({ "errorDetail": detail, "error": m })).await;
        }
        // End the response first; the context (and secrets) go afterwards.
        drop(tx);
        let _ = tokio::task::spawn_blocking(cleanup).await;
    });
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn prune<B: BuildBackend>(State(b): State<Arc<B>>) -> ApiResult<Response> {
    let n = b.prune()?;
    Ok(json(&serde_json::json!({ "CachesDeleted": null, "SpaceReclaimed": 0, "EntriesRemoved": n })))
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
