//! Push: layers (compressed once, the compressed blob kept for the next push), config, then the
//! manifest. Blobs the registry already has are skipped; layers are compressed and uploaded
//! concurrently so both cores work. An image pulled from a registry is pushed with its original
//! manifest and blobs, so its digest is the same everywhere.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use skiff_image::digest::Digest;
use skiff_image::spec::{Descriptor, Manifest, media};
use skiff_image::{Image, ImageStore, Reference};
use tokio::sync::Semaphore;

use crate::auth::Credentials;
use crate::client::{Body, Registry, Transport};
use crate::config::RegistriesConfig;
use crate::error::DistError;
use crate::progress::{Meter, Progress, Sink, item};

const PARALLEL: usize = 3;

#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

fn store_err(e: impl std::fmt::Display) -> DistError {
    DistError::Store(e.to_string())
}

/// The blob to push for one layer and the layer's diff ID.
#[derive(Debug, Clone)]
struct LayerBlob {
    desc: Descriptor,
}

/// Finds or makes a compressed blob for a layer (blocking: may gzip the whole layer).
fn layer_blob(store: &ImageStore, chain_id: &Digest) -> Result<LayerBlob, DistError> {
    let rec = store
        .layers()
        .get(chain_id)
        .map_err(store_err)?
        .ok_or_else(|| store_err(format!("layer {chain_id} missing")))?;
    let compressed = |mt: &str| matches!(mt, media::OCI_LAYER_GZIP | media::OCI_LAYER_ZSTD | media::DOCKER_LAYER_GZIP);
    if compressed(&rec.blob.media_type) && store.content().contains(&rec.blob.digest) {
        return Ok(LayerBlob { desc: rec.blob });
    }
    if let Some(d) = store.layers().dist_blob(&rec.diff_id).map_err(store_err)? {
        return Ok(LayerBlob { desc: d });
    }
    // Compress once (gzip, fast level: layers are often already-compressed data) and keep it.
    // The layer's blob was verified against its digest when it was stored; it is not hashed
    // again here (the registry verifies what it receives).
    let t0 = std::time::Instant::now();
    let tar = store.layers().open_tar(&rec).map_err(store_err)?;
    let w = store.content().writer().map_err(store_err)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let (w, _) = skiff_image::layer::pgzip::compress(tar, io::BufWriter::with_capacity(1 << 20, w), 1, threads)
        .map_err(DistError::io("compressing a layer"))?;
    let w = w.into_inner().map_err(|e| store_err(e.error()))?;
    let size = w.len();
    let t1 = std::time::Instant::now();
    let digest = w.commit(None).map_err(store_err)?;
    tracing::debug!(layer = %rec.diff_id, size, compress_ms = (t1 - t0).as_millis() as u64, commit_ms = t1.elapsed().as_millis() as u64, "compressed a layer");
    let desc = Descriptor::new(media::DOCKER_LAYER_GZIP, digest, size);
    store.layers().set_dist_blob(&rec.diff_id, &desc).map_err(store_err)?;
    Ok(LayerBlob { desc })
}

fn file_body(path: std::path::PathBuf, meter: Option<Arc<Mutex<Meter>>>) -> Result<Body, DistError> {
    let f = std::fs::File::open(&path).map_err(DistError::io(format!("opening {}", path.display())))?;
    let stream = tokio_util_like::reader_stream(f).map(move |r| {
        if let (Ok(b), Some(m)) = (&r, &meter) {
            m.lock().unwrap_or_else(|p| p.into_inner()).add(b.len() as u64);
        }
        r.map(Frame::data)
    });
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// A blocking-file-to-stream adapter: reads 256 KiB chunks on the blocking pool.
mod tokio_util_like {
    use super::*;

    pub fn reader_stream(f: std::fs::File) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let mut f = f;
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match f.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }
}

async fn push_one_blob(
    reg: &Registry,
    store: &ImageStore,
    desc: &Descriptor,
    id: &str,
    sink: &Sink,
) -> Result<(), DistError> {
    let here = format!("{}/{}", reg.endpoint.host, reg.endpoint.repo);
    if reg.blob_exists(&desc.digest, &reg.push_scope()).await?.is_some() {
        let _ = store.layers().add_blob_source(&desc.digest, &here);
        item(sink, id, "Layer already exists");
        return Ok(());
    }
    // Another repository on the same registry has it: mount instead of uploading.
    let prefix = format!("{}/", reg.endpoint.host);
    for src in store.layers().blob_sources(&desc.digest) {
        let Some(from) = src.strip_prefix(&prefix) else { continue };
        if from == reg.endpoint.repo {
            continue;
        }
        if reg.mount_blob(&desc.digest, from).await.unwrap_or(false) {
            let _ = store.layers().add_blob_source(&desc.digest, &here);
            item(sink, id, &format!("Mounted from {from}"));
            return Ok(());
        }
    }
    let path = store.content().path(&desc.digest);
    let meter = Arc::new(Mutex::new(Meter::new(sink.clone(), id, "Pushing", desc.size)));
    let make = move || {
        if let Ok(mut m) = meter.lock() {
            m.done = 0;
        }
        file_body(path.clone(), Some(meter.clone()))
    };
    reg.push_blob(&desc.digest, desc.size, &make).await?;
    let _ = store.layers().add_blob_source(&desc.digest, &here);
    item(sink, id, "Pushed");
    Ok(())
}

/// The original manifest of a pulled image, if it and every blob it names are still here.
fn original_manifest(store: &ImageStore, img: &Image) -> Option<(Descriptor, Vec<u8>, Manifest)> {
    let desc = img.record.manifest.clone()?;
    if !media::is_manifest(&desc.media_type) {
        return None;
    }
    let bytes = store.content().read(&desc.digest, skiff_image::spec::MAX_JSON_BLOB).ok()?;
    let m = Manifest::parse(&bytes).ok()?;
    if m.config.digest != *img.id() || m.layers.len() != img.chain.len() {
        return None;
    }
    m.layers.iter().all(|l| store.content().contains(&l.digest)).then_some((desc, bytes, m))
}

/// Pushes one tag (or, with no tag, every tag of the repository).
pub async fn push(
    store: Arc<ImageStore>,
    cfg: &RegistriesConfig,
    r: &Reference,
    creds: Option<Credentials>,
    sink: Sink,
) -> Result<Vec<PushOutcome>, DistError> {
    let refs: Vec<Reference> = match r.tag() {
        Some(_) => vec![r.clone()],
        None => {
            let repo = r.repository();
            let mut v: Vec<Reference> = store
                .all_refs()
                .into_iter()
                .map(|(x, _)| x)
                .filter(|x| x.repository() == repo && x.tag().is_some())
                .collect();
            v.sort_by_key(|x| x.to_string());
            if v.is_empty() {
                return Err(DistError::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_repository()
                )));
            }
            v
        }
    };
    let ep = cfg
        .endpoints(r.domain(), r.path(), true)
        .map_err(DistError::Config)?
        .pop()
        .ok_or_else(|| DistError::Config("no endpoint".into()))?;
    sink(Progress::Status(format!("The push refers to repository [{}]", r.repository())));
    let reg = Arc::new(Registry::new(Transport::shared()?, ep, creds));
    let mut out = Vec::new();
    for t in refs {
        let img = store.resolve(&t.to_string()).map_err(|_| {
            DistError::NotFound(format!("An image does not exist locally with the tag: {}", t.familiar()))
        })?;
        out.push(push_image(&store, &reg, &img, t.tag().unwrap_or("latest"), r, &sink).await?);
    }
    Ok(out)
}

async fn push_image(
    store: &Arc<ImageStore>,
    reg: &Arc<Registry>,
    img: &Arc<Image>,
    tag: &str,
    r: &Reference,
    sink: &Sink,
) -> Result<PushOutcome, DistError> {
    let original = {
        let (s, i) = (store.clone(), img.clone());
        tokio::task::spawn_blocking(move || original_manifest(&s, &i)).await.map_err(store_err)?
    };
    let diff_ids = img.config.rootfs.diff_ids.clone();
    for d in diff_ids.iter().rev() {
        item(sink, d.short(), "Preparing");
    }
    let sem = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for (i, chain_id) in img.chain.iter().enumerate() {
        let (store, reg, sem, sink, chain_id) =
            (store.clone(), reg.clone(), sem.clone(), sink.clone(), chain_id.clone());
        let orig_layer = original.as_ref().map(|(_, _, m)| m.layers[i].clone());
        let diff_id = diff_ids[i].clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.map_err(store_err)?;
            let id = diff_id.short().to_string();
            let lb = match orig_layer {
                Some(desc) => LayerBlob { desc },
                None => {
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || layer_blob(&s, &chain_id)).await.map_err(store_err)??
                }
            };
            push_one_blob(&reg, &store, &lb.desc, &id, &sink).await?;
            Ok::<LayerBlob, DistError>(lb)
        }));
    }
    let mut blobs = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await.map_err(store_err).and_then(|x| x) {
            Ok(b) => blobs.push(b),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Config.
    let cfg_bytes = store.content().read(img.id(), skiff_image::spec::MAX_JSON_BLOB).map_err(store_err)?;
    let (manifest_mt, manifest_bytes) = match original {
        Some((desc, bytes, m)) => {
            push_config(reg, store, &m.config, sink).await?;
            (desc.media_type, bytes)
        }
        None => {
            let zstd = blobs.iter().any(|b| b.desc.media_type == media::OCI_LAYER_ZSTD);
            let (mt, cfg_mt) = if zstd {
                (media::OCI_MANIFEST, media::OCI_CONFIG)
            } else {
                (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
            };
            let cfg_desc = Descriptor::new(cfg_mt, img.id().clone(), cfg_bytes.len() as u64);
            push_config(reg, store, &cfg_desc, sink).await?;
            let layers: Vec<serde_json::Value> = blobs
                .iter()
                .map(|b| {
                    let lmt = match (zstd, b.desc.media_type.as_str()) {
                        (false, _) => media::DOCKER_LAYER_GZIP,
                        (true, m) => {
                            if m == media::DOCKER_LAYER_GZIP {
                                media::OCI_LAYER_GZIP
                            } else {
                                m
                            }
                        }
                    };
                    serde_json::json!({"mediaType": lmt, "size": b.desc.size, "digest": b.desc.digest})
                })
                .collect();
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": mt,
                "config": {"mediaType": cfg_mt, "size": cfg_desc.size, "digest": cfg_desc.digest},
                "layers": layers,
            });
            let bytes = serde_json::to_vec_pretty(&m).map_err(store_err)?;
            (mt.to_string(), bytes)
        }
    };
    let size = manifest_bytes.len() as u64;
    let digest = reg.put_manifest(tag, &manifest_mt, manifest_bytes.clone()).await?;
    // Remember the manifest and the repo digest, as Docker does after a push.
    {
        let (s, i) = (store.clone(), img.clone());
        let repo_digest = format!("{}@{digest}", r.familiar_repository());
        let mdesc = Descriptor::new(&manifest_mt, digest.clone(), size);
        let _ = tokio::task::spawn_blocking(move || -> Result<(), DistError> {
            s.content().put(&manifest_bytes).map_err(store_err)?;
            let mut rec = s.get(i.id()).map(|x| x.record.clone()).unwrap_or_else(|| i.record.clone());
            if rec.manifest.is_none() {
                rec.manifest = Some(mdesc);
            }
            if !rec.repo_digests.contains(&repo_digest) {
                rec.repo_digests.push(repo_digest);
            }
            s.update_record(rec).map_err(store_err)
        })
        .await;
    }
    sink(Progress::Status(format!("{tag}: digest: {digest} size: {size}")));
    sink(Progress::Aux(serde_json::json!({"Tag": tag, "Digest": digest.to_string(), "Size": size})));
    Ok(PushOutcome { tag: tag.to_string(), digest, size })
}

async fn push_config(reg: &Registry, store: &ImageStore, desc: &Descriptor, sink: &Sink) -> Result<(), DistError> {
    if reg.blob_exists(&desc.digest, &reg.push_scope()).await?.is_some() {
        return Ok(());
    }
    let path = store.content().path(&desc.digest);
    let make = move || file_body(path.clone(), None);
    reg.push_blob(&desc.digest, desc.size, &make).await?;
    let _ = sink;
    Ok(())
}
