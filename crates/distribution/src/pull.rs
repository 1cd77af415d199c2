//! Pull: manifest (index resolved to a platform) → config → layers, each verified by digest
//! before it becomes visible. Layers download concurrently while earlier ones unpack in order;
//! blobs and layers already present are skipped, so a pull interrupted half-way resumes.

use std::sync::Arc;

use http_body_util::BodyExt;
use skiff_image::digest::Digest;
use skiff_image::spec::{self, Descriptor, ImageConfig, Index, MAX_JSON_BLOB, Manifest, Platform, media};
use skiff_image::{Image, ImageStore, Reference};
use tokio::sync::Semaphore;

use crate::auth::Credentials;
use crate::client::{Registry, Transport, read_body};
use crate::config::{Endpoint, RegistriesConfig};
use crate::error::DistError;
use crate::progress::{Meter, Progress, Sink, item};

/// Concurrent layer downloads per pull.
const PARALLEL: usize = 3;

#[derive(Debug)]
pub struct PullOutcome {
    pub image: Arc<Image>,
    pub manifest_digest: Digest,
    /// False if the image was already here ("Image is up to date").
    pub downloaded: bool,
}

/// Parses a platform specifier (`os[/arch[/variant]]`, as Docker's tools write it).
pub fn parse_platform(s: &str) -> Result<Platform, DistError> {
    Platform::parse(s).map_err(DistError::Invalid)
}

fn platform_matches(want: &Platform, have: &Platform) -> bool {
    want.matches(have)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DistError> + Send + 'static,
) -> Result<T, DistError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| DistError::Store(format!("worker failed: {e}")))?
}

/// Pulls `r` into the store, trying mirrors first, and tags it.
pub async fn pull(
    store: Arc<ImageStore>,
    cfg: &RegistriesConfig,
    r: &Reference,
    platform: Option<Platform>,
    creds: Option<Credentials>,
    sink: Sink,
) -> Result<PullOutcome, DistError> {
    let endpoints = cfg.endpoints(r.domain(), r.path(), false).map_err(DistError::Config)?;
    let transport = Transport::shared()?;
    let platform = platform.unwrap_or_else(Platform::host);
    let mut last = None;
    for ep in endpoints {
        let mirror = ep.mirror;
        let host = ep.host.clone();
        match pull_from(&store, transport.clone(), ep, r, &platform, creds.clone(), sink.clone()).await {
            Ok(o) => return Ok(o),
            Err(e) if mirror => {
                tracing::info!(mirror = %host, "pull from mirror failed, trying the next endpoint: {e}");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DistError::Config("no registry endpoint".into())))
}

async fn pull_from(
    store: &Arc<ImageStore>,
    transport: Transport,
    ep: Endpoint,
    r: &Reference,
    platform: &Platform,
    creds: Option<Credentials>,
    sink: Sink,
) -> Result<PullOutcome, DistError> {
    let reg = Arc::new(Registry::new(transport, ep, creds));
    let reference = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let label = r.tag().map(str::to_string).unwrap_or_else(|| reference.clone());
    let pulling = || item(&sink, &label, &format!("Pulling from {}", r.familiar_repository()));
    let Resolved { bytes, mt, digest, index_digest } = resolve_manifest(&reg, r, &reference, platform, pulling).await?;
    if !media::is_manifest(&mt) {
        return Err(DistError::Invalid(format!("unsupported manifest media type {mt:?}")));
    }
    let manifest = Manifest::parse(&bytes).map_err(|e| DistError::Invalid(format!("manifest: {e}")))?;
    if manifest.config.size > MAX_JSON_BLOB {
        return Err(DistError::TooLarge(format!("image config of {} bytes", manifest.config.size)));
    }
    let cfg_digest = manifest.config.digest.clone();
    let cfg_bytes = fetch_config(store, &reg, &cfg_digest).await?;
    let config = ImageConfig::parse(&cfg_bytes).map_err(|e| DistError::Invalid(format!("image config: {e}")))?;
    let layers: Vec<Descriptor> = manifest.layers.iter().filter(|l| media::is_layer(&l.media_type)).cloned().collect();
    if layers.len() != config.rootfs.diff_ids.len() {
        return Err(DistError::Invalid(format!(
            "manifest lists {} layers, config {} diff IDs",
            layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for l in &layers {
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(DistError::Invalid(format!("layer {} is non-distributable (foreign URLs)", l.digest)));
        }
    }
    let chain = spec::chain_ids(&config.rootfs.diff_ids);
    let existing = store.get(&cfg_digest);
    let mut downloaded = existing.is_none();
    downloaded |= fetch_layers(store, &reg, &layers, &chain, &config.rootfs.diff_ids, &sink).await?;
    // The image, its manifest kept for pushes and repo digests.
    let store2 = store.clone();
    let manifest_desc = Descriptor::new(&mt, digest.clone(), bytes.len() as u64);
    let repo_digest =
        format!("{}@{}", r.familiar_repository(), if index_digest != digest { &index_digest } else { &digest });
    let tag_ref = r.tag().map(|_| r.clone());
    let cfg2 = cfg_bytes.clone();
    let image = blocking(move || {
        store2.content().put(&bytes).map_err(|e| DistError::Store(e.to_string()))?;
        let img = store2.add_image(&cfg2, None, Some(manifest_desc)).map_err(|e| DistError::Store(e.to_string()))?;
        let mut rec = img.record.clone();
        if !rec.repo_digests.contains(&repo_digest) {
            rec.repo_digests.push(repo_digest);
            store2.update_record(rec).map_err(|e| DistError::Store(e.to_string()))?;
        }
        if let Some(t) = tag_ref {
            store2.tag(&t, img.id()).map_err(|e| DistError::Store(e.to_string()))?;
        }
        store2.get(img.id()).ok_or_else(|| DistError::Store("image vanished".into()))
    })
    .await?;
    let shown = if index_digest != digest { &index_digest } else { &digest };
    sink(Progress::Status(format!("Digest: {shown}")));
    let name = r.familiar();
    sink(Progress::Status(if downloaded {
        format!("Status: Downloaded newer image for {name}")
    } else {
        format!("Status: Image is up to date for {name}")
    }));
    Ok(PullOutcome { image, manifest_digest: shown.clone(), downloaded })
}

/// Downloads the layers the store lacks, bounded, each verified into the content store, and
/// unpacks them; returns whether any was fetched.
async fn fetch_layers(
    store: &Arc<ImageStore>,
    reg: &Arc<Registry>,
    layers: &[Descriptor],
    chain: &[Digest],
    diff_ids: &[Digest],
    sink: &Sink,
) -> Result<bool, DistError> {
    let mut downloaded = false;
    // Downloads, bounded, each verified into the content store. With overlay every layer
    // unpacks into its own directory, so a layer unpacks as soon as it has arrived; the copy
    // driver needs its parent's tree first, so there layers unpack in order afterwards.
    let concurrent_unpack = store.layers().driver() == skiff_image::layers::Driver::Overlay;
    let sem = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = l.digest.short().to_string();
        let have_layer = store.layers().get(&chain[i]).map_err(|e| DistError::Store(e.to_string()))?.is_some();
        if have_layer {
            item(sink, &id, "Already exists");
            tasks.push(None);
            continue;
        }
        downloaded = true;
        let have_blob = store.content().contains(&l.digest);
        item(sink, &id, if have_blob { "Download complete" } else { "Pulling fs layer" });
        let unpack = concurrent_unpack.then(|| Unpack {
            store: store.clone(),
            parent: if i == 0 { None } else { Some(chain[i - 1].clone()) },
            desc: l.clone(),
            diff_id: diff_ids[i].clone(),
            sink: sink.clone(),
        });
        let (reg, sem, store, l, sink) = (reg.clone(), sem.clone(), store.clone(), l.clone(), sink.clone());
        tasks.push(Some(tokio::spawn(async move {
            if !have_blob {
                let _permit = sem.acquire_owned().await.map_err(|e| DistError::Store(e.to_string()))?;
                let t0 = std::time::Instant::now();
                download(&reg, &store, &l, &id, sink).await?;
                tracing::debug!(blob = %l.digest, bytes = l.size, ms = t0.elapsed().as_millis() as u64, "downloaded");
            }
            let src = format!("{}/{}", reg.endpoint.host, reg.endpoint.repo);
            let _ = store.layers().add_blob_source(&l.digest, &src);
            match unpack {
                Some(u) => u.run().await,
                None => Ok(()),
            }
        })));
    }
    let mut first_err = None;
    for (i, t) in tasks.into_iter().enumerate() {
        let Some(t) = t else { continue };
        let r = t.await.map_err(|e| DistError::Store(format!("download task: {e}"))).and_then(|x| x);
        if let Err(e) = r {
            first_err.get_or_insert(e);
            continue;
        }
        if first_err.is_some() || concurrent_unpack {
            continue;
        }
        let u = Unpack {
            store: store.clone(),
            parent: if i == 0 { None } else { Some(chain[i - 1].clone()) },
            desc: layers[i].clone(),
            diff_id: diff_ids[i].clone(),
            sink: sink.clone(),
        };
        if let Err(e) = u.run().await {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(downloaded),
    }
}

/// A pulled manifest: its bytes, media type and digest, and the digest of the index it was
/// chosen from (the same when there was none).
struct Resolved {
    bytes: Vec<u8>,
    mt: String,
    digest: Digest,
    index_digest: Digest,
}

/// Fetches the manifest `reference` names, checked against a digest in `r`; from an index,
/// the manifest for `platform`. `pulling` announces the pull once the registry has answered.
async fn resolve_manifest(
    reg: &Registry,
    r: &Reference,
    reference: &str,
    platform: &Platform,
    pulling: impl FnOnce(),
) -> Result<Resolved, DistError> {
    let (mut bytes, mut mt, mut digest) = reg.get_manifest(reference, MAX_JSON_BLOB).await?;
    // Progress starts once the registry has answered: an unreachable or unknown repository
    // is an HTTP error, as dockerd's (moby's TestImagePullNonExisting).
    pulling();
    if let Some(want) = r.digest()
        && *want != digest
    {
        return Err(DistError::DigestMismatch {
            what: "manifest".into(),
            expected: want.to_string(),
            actual: digest.to_string(),
        });
    }
    if mt.is_empty() || mt == "application/json" || mt == "text/plain" {
        mt = sniff_media_type(&bytes);
    }
    let index_digest = digest.clone();
    if media::is_index(&mt) {
        let idx = Index::parse(&bytes).map_err(|e| DistError::Invalid(format!("index: {e}")))?;
        let chosen = idx
            .manifests
            .iter()
            .filter(|m| media::is_manifest(&m.media_type))
            .find(|m| m.platform.as_ref().is_some_and(|p| platform_matches(platform, p)))
            .or_else(|| idx.manifests.iter().find(|m| m.platform.is_none() && media::is_manifest(&m.media_type)))
            .cloned()
            .ok_or_else(|| {
                DistError::NotFound(format!(
                    "no matching manifest for {}/{}{} in the manifest list entries",
                    platform.os,
                    platform.architecture,
                    platform.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default()
                ))
            })?;
        let (b, m, d) = reg.get_manifest(&chosen.digest.to_string(), MAX_JSON_BLOB).await?;
        if d != chosen.digest {
            return Err(DistError::DigestMismatch {
                what: "manifest".into(),
                expected: chosen.digest.to_string(),
                actual: d.to_string(),
            });
        }
        bytes = b;
        digest = d;
        mt = if m.is_empty() || !media::is_manifest(&m) { chosen.media_type.clone() } else { m };
    }
    Ok(Resolved { bytes, mt, digest, index_digest })
}

/// The image config: from the content store when it is there, else fetched and verified.
async fn fetch_config(store: &ImageStore, reg: &Registry, cfg_digest: &Digest) -> Result<Vec<u8>, DistError> {
    Ok(match store.content().contains(cfg_digest) {
        true => store.content().read(cfg_digest, MAX_JSON_BLOB).map_err(|e| DistError::Store(e.to_string()))?,
        false => {
            let resp = reg.get_blob(cfg_digest, &reg.pull_scope()).await?;
            let b = read_body(resp.into_body(), MAX_JSON_BLOB as usize).await?;
            let actual = Digest::of(&b);
            if actual != *cfg_digest {
                return Err(DistError::DigestMismatch {
                    what: "image config".into(),
                    expected: cfg_digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            b
        }
    })
}

/// Unpacks one downloaded layer blob, verifying its diff ID.
struct Unpack {
    store: Arc<ImageStore>,
    parent: Option<Digest>,
    desc: Descriptor,
    diff_id: Digest,
    sink: Sink,
}

impl Unpack {
    async fn run(self) -> Result<(), DistError> {
        let id = self.desc.digest.short().to_string();
        item(&self.sink, &id, "Extracting");
        let t0 = std::time::Instant::now();
        let Unpack { store, parent, desc, diff_id, sink } = self;
        blocking(move || {
            store
                .layers()
                .register(parent.as_ref(), &desc, Some(&diff_id))
                .map_err(|e| DistError::Store(format!("layer {}: {e}", desc.digest)))?;
            if !matches!(desc.media_type.as_str(), media::OCI_LAYER | media::DOCKER_LAYER) {
                let _ = store.layers().set_dist_blob(&diff_id, &desc);
            }
            Ok(())
        })
        .await?;
        tracing::debug!(layer = %id, ms = t0.elapsed().as_millis() as u64, "unpacked");
        item(&sink, &id, "Pull complete");
        Ok(())
    }
}

fn sniff_media_type(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if v.get("manifests").is_some() { media::OCI_INDEX.to_string() } else { media::OCI_MANIFEST.to_string() }
}

/// Streams one blob into the content store; visible only once its digest and size match.
async fn download(
    reg: &Registry,
    store: &Arc<ImageStore>,
    l: &Descriptor,
    id: &str,
    sink: Sink,
) -> Result<(), DistError> {
    let resp = reg.get_blob(&l.digest, &reg.pull_scope()).await?;
    if let Some(n) = crate::client::content_length(&resp)
        && n != l.size
    {
        return Err(DistError::Invalid(format!(
            "blob {}: registry sends {n} bytes, manifest says {}",
            l.digest, l.size
        )));
    }
    let mut body = resp.into_body();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
    let store2 = store.clone();
    let expected = l.digest.clone();
    let size = l.size;
    let writer = tokio::task::spawn_blocking(move || -> Result<(), DistError> {
        use std::io::Write;
        let mut w = store2.content().writer().map_err(|e| DistError::Store(e.to_string()))?;
        while let Some(b) = rx.blocking_recv() {
            w.write_all(&b).map_err(DistError::io("writing a blob"))?;
        }
        if w.len() != size {
            return Err(DistError::Invalid(format!(
                "blob {expected}: got {} bytes, expected {size} (truncated)",
                w.len()
            )));
        }
        w.commit(Some(&expected)).map_err(|e| match e {
            skiff_image::content::ContentError::DigestMismatch { expected, actual } => DistError::DigestMismatch {
                what: "layer".into(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            e => DistError::Store(e.to_string()),
        })?;
        Ok(())
    });
    let mut meter = Meter::new(sink.clone(), id, "Downloading", l.size);
    let mut err = None;
    let mut got = 0u64;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    got += d.len() as u64;
                    if got > l.size {
                        err = Some(DistError::Invalid(format!(
                            "blob {}: more than the {} bytes announced",
                            l.digest, l.size
                        )));
                        break;
                    }
                    meter.add(d.len() as u64);
                    if tx.send(d).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                err = Some(DistError::Transport(format!(
                    "downloading {}: truncated after {got} of {} bytes: {e}",
                    l.digest, l.size
                )));
                break;
            }
        }
    }
    if err.is_some() {
        // Make the writer fail rather than commit a short blob.
        drop(tx);
        let _ = writer.await;
        return Err(err.unwrap_or_else(|| DistError::Store("download failed".into())));
    }
    drop(tx);
    item(&sink, id, "Verifying Checksum");
    writer.await.map_err(|e| DistError::Store(format!("blob writer: {e}")))??;
    item(&sink, id, "Download complete");
    Ok(())
}
