//! Push: layers, config, then the manifest. A layer pulled as a compressed blob is pushed as
//! that blob; any other is compressed while it is uploaded (nothing written locally, as Docker
//! does) and its digest remembered, so the next push can skip or mount it. Blobs the registry
//! already has are skipped; layers go up concurrently so both cores work. An image pulled from a registry is pushed with its original
//! manifest and blobs, so its digest is the same everywhere.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use skiff_image::digest::{Digest, Hasher};
use skiff_image::layers::LayerRecord;
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

/// What a layer is pushed as.
#[derive(Debug, Clone)]
enum LayerSource {
    /// A compressed blob held in the content store (the one it was pulled as).
    Held(Descriptor),
    /// Compressed for an earlier push and not kept: the registry may have it already; if not,
    /// it is compressed again (the compressor is deterministic, so to the same digest).
    Known(Descriptor),
    /// Never compressed: compress while uploading.
    Compress,
}

/// Works out how to push a layer (blocking: reads the metadata database).
fn layer_source(store: &ImageStore, chain_id: &Digest) -> Result<(LayerSource, LayerRecord), DistError> {
    let rec = store
        .layers()
        .get(chain_id)
        .map_err(store_err)?
        .ok_or_else(|| store_err(format!("layer {chain_id} missing")))?;
    let compressed = |mt: &str| matches!(mt, media::OCI_LAYER_GZIP | media::OCI_LAYER_ZSTD | media::DOCKER_LAYER_GZIP);
    if compressed(&rec.blob.media_type) && store.content().contains(&rec.blob.digest) {
        return Ok((LayerSource::Held(rec.blob.clone()), rec));
    }
    if let Some(d) = store.layers().dist_blob(&rec.diff_id).map_err(store_err)? {
        return Ok((LayerSource::Held(d), rec));
    }
    if let Some(d) = store.layers().dist_digest(&rec.diff_id).map_err(store_err)? {
        return Ok((LayerSource::Known(d), rec));
    }
    Ok((LayerSource::Compress, rec))
}

/// Compresses a layer (gzip, fast level, on every core: layers are often already-compressed
/// data) straight into an upload, hashing as it goes; nothing is written locally. The layer's
/// blob was verified when it was stored and is not hashed again (the registry verifies what it
/// receives). Remembers the digest for the next push.
async fn push_compressing(
    reg: &Registry,
    store: &Arc<ImageStore>,
    rec: &LayerRecord,
    id: &str,
    sink: &Sink,
) -> Result<Descriptor, DistError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let (s, r) = (store.clone(), rec.clone());
    let producer = tokio::task::spawn_blocking(move || -> Result<(Digest, u64), DistError> {
        let tar = s.layers().open_tar(&r).map_err(store_err)?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let w = ChannelWriter { tx, hasher: Hasher::new(), buf: Vec::with_capacity(CHUNK) };
        let (w, _) =
            skiff_image::layer::pgzip::compress(tar, w, 1, threads).map_err(DistError::io("compressing a layer"))?;
        w.finish().map_err(DistError::io("compressing a layer"))
    });
    // The compressed size is not known in advance: the bar runs against the layer's size.
    let meter = Arc::new(Mutex::new(Meter::new(sink.clone(), id, "Pushing", rec.size)));
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).map(move |r| {
            if let Ok(b) = &r {
                meter.lock().unwrap_or_else(|p| p.into_inner()).add(b.len() as u64);
            }
            r.map(Frame::data)
        });
    let size = Arc::new(Mutex::new(0u64));
    let size2 = size.clone();
    let digest = async move {
        let (d, n) = producer.await.map_err(store_err)??;
        *size2.lock().unwrap_or_else(|p| p.into_inner()) = n;
        Ok(d)
    };
    let d = reg.push_blob_streamed(BodyExt::boxed(StreamBody::new(stream)), digest).await?;
    let n = *size.lock().unwrap_or_else(|p| p.into_inner());
    let desc = Descriptor::new(media::DOCKER_LAYER_GZIP, d, n);
    let (s, diff_id, desc2) = (store.clone(), rec.diff_id.clone(), desc.clone());
    let here = format!("{}/{}", reg.endpoint.host, reg.endpoint.repo);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = s.layers().set_dist_blob(&diff_id, &desc2);
        let _ = s.layers().add_blob_source(&desc2.digest, &here);
    })
    .await;
    item(sink, id, "Pushed");
    Ok(desc)
}

const CHUNK: usize = 256 << 10;

/// Hands a compressor's output to the upload in 256 KiB pieces, hashing it on the way.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    hasher: Hasher,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let b = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(b)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload ended"))
    }

    fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.send()?;
        let n = self.hasher.len();
        Ok((std::mem::take(&mut self.hasher).finish(), n))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

/// Whether the repository has the blob already, or can mount it from another repository of
/// the same registry that is known to hold it.
async fn already_there(
    reg: &Registry,
    store: &ImageStore,
    desc: &Descriptor,
    id: &str,
    sink: &Sink,
) -> Result<bool, DistError> {
    let here = format!("{}/{}", reg.endpoint.host, reg.endpoint.repo);
    if reg.blob_exists(&desc.digest, &reg.push_scope()).await?.is_some() {
        let _ = store.layers().add_blob_source(&desc.digest, &here);
        item(sink, id, "Layer already exists");
        return Ok(true);
    }
    let prefix = format!("{}/", reg.endpoint.host);
    for src in store.layers().blob_sources(&desc.digest) {
        let Some(from) = src.strip_prefix(&prefix) else { continue };
        if from == reg.endpoint.repo {
            continue;
        }
        if reg.mount_blob(&desc.digest, from).await.unwrap_or(false) {
            let _ = store.layers().add_blob_source(&desc.digest, &here);
            item(sink, id, &format!("Mounted from {from}"));
            return Ok(true);
        }
    }
    Ok(false)
}

async fn push_one_blob(
    reg: &Registry,
    store: &ImageStore,
    desc: &Descriptor,
    id: &str,
    sink: &Sink,
) -> Result<(), DistError> {
    if already_there(reg, store, desc, id, sink).await? {
        return Ok(());
    }
    let here = format!("{}/{}", reg.endpoint.host, reg.endpoint.repo);
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
            if let Some(desc) = orig_layer {
                push_one_blob(&reg, &store, &desc, &id, &sink).await?;
                return Ok::<Descriptor, DistError>(desc);
            }
            let s = store.clone();
            let (src, rec) =
                tokio::task::spawn_blocking(move || layer_source(&s, &chain_id)).await.map_err(store_err)??;
            match src {
                LayerSource::Held(desc) => {
                    push_one_blob(&reg, &store, &desc, &id, &sink).await?;
                    Ok(desc)
                }
                LayerSource::Known(desc) if already_there(&reg, &store, &desc, &id, &sink).await? => Ok(desc),
                LayerSource::Known(_) | LayerSource::Compress => push_compressing(&reg, &store, &rec, &id, &sink).await,
            }
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
            let zstd = blobs.iter().any(|b| b.media_type == media::OCI_LAYER_ZSTD);
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
                    let lmt = match (zstd, b.media_type.as_str()) {
                        (false, _) => media::DOCKER_LAYER_GZIP,
                        (true, m) => {
                            if m == media::DOCKER_LAYER_GZIP {
                                media::OCI_LAYER_GZIP
                            } else {
                                m
                            }
                        }
                    };
                    serde_json::json!({"mediaType": lmt, "size": b.size, "digest": b.digest})
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
