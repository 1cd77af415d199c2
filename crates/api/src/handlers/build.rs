//! `POST /build` (the classic builder's API: a tar context in, JSON messages out) and
//! `POST /build/prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use skiff_engine::Engine;
use skiff_engine::build::{BuildOut, BuildRequest};
use tokio::sync::mpsc;

use super::json;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

fn json_map(p: &Params, k: &str) -> ApiResult<BTreeMap<String, String>> {
    match p.string(k).filter(|s| !s.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(s) => {
            let m: BTreeMap<String, Option<String>> =
                serde_json::from_str(&s).map_err(|e| ApiError::bad_request(format!("invalid {k}: {e}")))?;
            Ok(m.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
        }
    }
}

pub async fn build(State(e): State<Arc<Engine>>, req: Request) -> ApiResult<Response> {
    let p = Params::parse(req.uri().query());
    if p.string("version").as_deref() == Some("2") {
        return Err(ApiError::bad_request("BuildKit (version=2) is not supported; use the classic builder API"));
    }
    if let Some(r) = p.string("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "remote build contexts ({r}) need network access; send a context tar"
        )));
    }
    if let Some(pl) = p.string("platform").filter(|s| !s.is_empty()) {
        let host = skiff_image::spec::Platform::host();
        let want = pl.to_ascii_lowercase();
        if want != format!("{}/{}", host.os, host.architecture) && want != host.os {
            return Err(ApiError::bad_request(format!(
                "only the host platform ({}/{}) can be built, not {pl}",
                host.os, host.architecture
            )));
        }
    }
    let mut tags = Vec::new();
    for t in p.all("t") {
        let r = skiff_image::Reference::parse_normalized(&t)
            .map_err(|err| ApiError::bad_request(format!("invalid tag {t:?}: {err}")))?;
        tags.push(r.with_default_tag());
    }
    let quiet = p.bool("q", false);
    let breq = BuildRequest {
        context: std::path::PathBuf::new(),
        dockerfile: p.string("dockerfile").unwrap_or_else(|| "Dockerfile".into()),
        tags,
        build_args: json_map(&p, "buildargs")?,
        labels: json_map(&p, "labels")?,
        no_cache: p.bool("nocache", false),
        target: p.string("target").filter(|t| !t.is_empty()),
        pull: p.bool("pull", false),
        force_rm: p.bool("forcerm", false),
        network: p.string("networkmode").filter(|n| !n.is_empty() && n != "default"),
        secrets: None,
        cancel: Default::default(),
    };
    // The context: untrusted tar (maybe compressed), unpacked path-safely into a private dir.
    let dir = e.config.data_root.join("tmp").join(skiff_image::fsutil::random_name("context"));
    std::fs::create_dir_all(&dir).map_err(|err| ApiError(err.into()))?;
    let mut reader = stream::BodyReader::new(req.into_body());
    let dir2 = dir.clone();
    let unpacked = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let (_, tar) = skiff_image::layer::decompress(&mut reader)?;
        let opts = skiff_image::layer::UnpackOptions {
            whiteouts: skiff_image::layer::WhiteoutMode::Literal,
            ..Default::default()
        };
        skiff_image::layer::unpack(tar, &dir2, &opts).map_err(std::io::Error::other)?;
        std::io::copy(&mut reader, &mut std::io::sink())?;
        Ok(())
    })
    .await
    .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))?;
    if let Err(err) = unpacked {
        let _ = skiff_image::fsutil::remove_all(&dir);
        return Err(ApiError::bad_request(format!("invalid build context: {err}")));
    }
    // `skiff build --secret` sends secrets in the context under a reserved directory: move them
    // out of the context (COPY can never see them) into a private directory.
    let secrets = {
        let inside = dir.join(".skiff-build-secrets");
        if inside.is_dir() {
            let out = e.config.data_root.join("tmp").join(skiff_image::fsutil::random_name("secrets"));
            std::fs::rename(&inside, &out).map_err(|err| ApiError(err.into()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700));
            Some(out)
        } else {
            None
        }
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let breq = BuildRequest { context: dir.clone(), secrets: secrets.clone(), cancel: cancel.clone(), ..breq };
    let (tx, rx) = mpsc::channel(256);
    let (utx, mut urx) = mpsc::unbounded_channel::<serde_json::Value>();
    let out: skiff_engine::build::Out = Arc::new(move |o| {
        let v = match o {
            BuildOut::Stream(s) if !quiet => serde_json::json!({ "stream": s }),
            BuildOut::Stream(_) => return,
            BuildOut::Aux(a) => serde_json::json!({ "aux": a }),
        };
        let _ = utx.send(v);
    });
    tokio::spawn(async move {
        let task = tokio::spawn({
            let e = e.clone();
            async move { e.build(breq, out).await }
        });
        // A client that goes away (its response dropped) cancels the build, whether or not
        // the build is saying anything at the time.
        let fwd = async {
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
        let (r, _) = tokio::join!(task, fwd);
        let err = match r {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(m) = err {
            let _ = tx.send(serde_json::json!({ "errorDetail": { "message": m }, "error": m })).await;
        }
        // End the response first; the context (and secrets) go afterwards.
        drop(tx);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = skiff_image::fsutil::remove_all(&dir);
            if let Some(s) = secrets {
                let _ = skiff_image::fsutil::remove_all(&s);
            }
        })
        .await;
    });
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn prune(State(e): State<Arc<Engine>>) -> ApiResult<Response> {
    let n = e.builder_prune()?;
    Ok(json(&serde_json::json!({ "CachesDeleted": null, "SpaceReclaimed": 0, "EntriesRemoved": n })))
}
