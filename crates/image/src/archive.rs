//! `docker save` / `docker load` archives.
//!
//! We write what Docker 25+ writes: an OCI image layout (`oci-layout`, `index.json`, `blobs/`)
//! that is also a docker-archive (`manifest.json`, `repositories`), with layers as uncompressed
//! tars named by their diff IDs. We read both that and the older docker-archive layout
//! (`<id>/layer.tar`, `<id>.json`, symlinked duplicate layers), and plain OCI layouts.
//!
//! Loading first unpacks the archive into a private directory (regular files only; symlinks
//! are recorded and resolved inside the archive), since the order of entries is not fixed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader};
use crate::layer::unpack::clean_path;
use crate::reference::Reference;
use crate::spec::{self, Descriptor, ImageConfig, Index, MAX_JSON_BLOB, Manifest, Platform, media};
use crate::store::{Image, ImageError, ImageStore};
use skiff_common::fsutil;

#[derive(Debug, Serialize, Deserialize)]
struct LegacyManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// What a load brought in, as the `docker load` output lines name it.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// "Loaded image: busybox:latest" or "Loaded image ID: sha256:…"
    pub lines: Vec<String>,
    pub images: Vec<Digest>,
}

fn invalid(why: impl Into<String>) -> ImageError {
    ImageError::Invalid(format!("invalid archive: {}", why.into()))
}

fn io_ctx(what: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { what: what.to_string(), source }
}

/// The unpacked archive: regular files under `dir`, symlinks in `links`.
struct Extracted {
    dir: PathBuf,
    links: HashMap<PathBuf, PathBuf>,
}

impl Extracted {
    /// Resolves an archive path through recorded symlinks, never leaving the archive.
    fn resolve(&self, p: &str) -> Result<PathBuf, ImageError> {
        let mut cur =
            clean_path(Path::new(p)).map_err(|e| invalid(e.to_string()))?.ok_or_else(|| invalid("empty path"))?;
        for _ in 0..16 {
            let Some(target) = self.links.get(&cur) else {
                return Ok(self.dir.join(&cur));
            };
            let base = cur.parent().unwrap_or(Path::new("")).to_path_buf();
            let joined = if target.is_absolute() { target.clone() } else { base.join(target) };
            // Lexical resolution of `..` within the archive.
            let mut out = PathBuf::new();
            for c in joined.components() {
                match c {
                    std::path::Component::ParentDir if !out.pop() => {
                        return Err(invalid(format!("link {p} leaves the archive")));
                    }
                    std::path::Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            cur = out;
        }
        Err(invalid(format!("too many links resolving {p}")))
    }

    fn open(&self, p: &str) -> Result<File, ImageError> {
        let path = self.resolve(p)?;
        File::open(&path).map_err(|_| invalid(format!("missing {p}")))
    }

    fn read_json_file(&self, p: &str) -> Result<Vec<u8>, ImageError> {
        let mut buf = Vec::new();
        self.open(p)?.take(MAX_JSON_BLOB + 1).read_to_end(&mut buf).map_err(io_ctx(p))?;
        if buf.len() as u64 > MAX_JSON_BLOB {
            return Err(invalid(format!("{p} is too large")));
        }
        Ok(buf)
    }
}

fn extract(mut r: impl Read, dir: &Path, limit: u64) -> Result<Extracted, ImageError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut ar = tar::Archive::new(crate::layer::TarGuard::new(&mut r));
    let mut links = HashMap::new();
    for e in ar.entries().map_err(|e| invalid(e.to_string()))? {
        let mut e = e.map_err(|e| invalid(e.to_string()))?;
        let raw = e.path().map_err(|e| invalid(e.to_string()))?.into_owned();
        let Some(rel) = clean_path(&raw).map_err(|e| invalid(e.to_string()))? else {
            continue;
        };
        match e.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(dir.join(&rel)).map_err(io_ctx("extracting archive"))?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let dest = dir.join(&rel);
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).map_err(io_ctx("extracting archive"))?;
                }
                let f = File::create(&dest).map_err(io_ctx("extracting archive"))?;
                // Zeros stay holes; no entry may be larger than a whole image may unpack to.
                skiff_common::tree::copy_sparse_limited(&mut e, &f, &mut buf, limit).map_err(|err| {
                    if err.kind() == io::ErrorKind::FileTooLarge {
                        invalid(format!(
                            "{} is larger than the daemon's limit on unpacked image size ({limit} bytes)",
                            rel.display()
                        ))
                    } else {
                        invalid(err.to_string())
                    }
                })?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t =
                    e.link_name().map_err(|e| invalid(e.to_string()))?.ok_or_else(|| invalid("link without target"))?;
                let t = if e.header().entry_type() == tar::EntryType::Link {
                    // Hard link targets are archive paths from the root.
                    PathBuf::from("/").join(t)
                } else {
                    t.into_owned()
                };
                links.insert(rel, t);
            }
            _ => {} // nothing else belongs in an image archive
        }
    }
    // Padding after the end-of-archive marker: read it so the sender can finish.
    io::copy(&mut r, &mut io::sink()).map_err(|e| invalid(e.to_string()))?;
    Ok(Extracted { dir: dir.to_path_buf(), links })
}

/// Loads every image in an archive stream.
pub fn load(store: &ImageStore, r: impl Read) -> Result<LoadResult, ImageError> {
    let dir = store.tmp_dir().join(fsutil::random_name("load"));
    fs::create_dir_all(&dir).map_err(io_ctx("creating load directory"))?;
    let result = (|| {
        let ex = extract(r, &dir, store.layers().max_image_size().unwrap_or(u64::MAX))?;
        if ex.resolve("manifest.json").map(|p| p.exists()).unwrap_or(false) {
            load_legacy(store, &ex)
        } else if ex.resolve("index.json").map(|p| p.exists()).unwrap_or(false) {
            load_oci(store, &ex)
        } else {
            Err(invalid("no manifest.json or index.json (not a docker-archive or OCI layout)"))
        }
    })();
    let _ = fsutil::remove_all(&dir);
    result
}

fn load_layers(store: &ImageStore, ex: &Extracted, paths: &[String], config: &ImageConfig) -> Result<(), ImageError> {
    if paths.len() != config.rootfs.diff_ids.len() {
        return Err(invalid(format!("{} layers listed, config has {}", paths.len(), config.rootfs.diff_ids.len())));
    }
    let chain = spec::chain_ids(&config.rootfs.diff_ids);
    for (i, p) in paths.iter().enumerate() {
        if store.layers().get(&chain[i])?.is_some() {
            continue;
        }
        let parent = if i == 0 { None } else { Some(&chain[i - 1]) };
        let mut f = ex.open(p)?;
        let rec = store.layers().create_from_tar(parent, &mut f)?;
        if rec.diff_id != config.rootfs.diff_ids[i] {
            return Err(invalid(format!(
                "layer {p}: content {} does not match the config's diff ID {}",
                rec.diff_id, config.rootfs.diff_ids[i]
            )));
        }
    }
    Ok(())
}

fn tag_loaded(store: &ImageStore, img: &Image, tags: &[String], out: &mut LoadResult) -> Result<(), ImageError> {
    out.images.push(img.id().clone());
    if tags.is_empty() {
        out.lines.push(format!("Loaded image ID: {}", img.id()));
    }
    for t in tags {
        let r = Reference::parse_normalized(t)?.with_default_tag();
        if let Some(old) = store.tag(&r, img.id())?
            && old != *img.id()
        {
            out.lines.push(format!(
                "The image {} already exists, renaming the old one with ID {} to empty string",
                r.familiar(),
                old
            ));
        }
        out.lines.push(format!("Loaded image: {}", r.familiar()));
    }
    Ok(())
}

fn load_legacy(store: &ImageStore, ex: &Extracted) -> Result<LoadResult, ImageError> {
    let entries: Vec<LegacyManifestEntry> = serde_json::from_slice(&ex.read_json_file("manifest.json")?)
        .map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let mut out = LoadResult::default();
    for e in entries {
        let cfg_bytes = ex.read_json_file(&e.config)?;
        let config = ImageConfig::parse(&cfg_bytes)?;
        load_layers(store, ex, &e.layers, &config)?;
        let img = store.add_image(&cfg_bytes, None, None)?;
        tag_loaded(store, &img, e.repo_tags.as_deref().unwrap_or(&[]), &mut out)?;
    }
    Ok(out)
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn read_verified(ex: &Extracted, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
    if d.size > MAX_JSON_BLOB {
        return Err(invalid(format!("{} is too large", d.digest)));
    }
    let bytes = ex.read_json_file(&blob_path(&d.digest))?;
    let actual = Digest::of(&bytes);
    if actual != d.digest {
        return Err(invalid(format!("blob {} has digest {actual}", d.digest)));
    }
    Ok(bytes)
}

fn load_oci(store: &ImageStore, ex: &Extracted) -> Result<LoadResult, ImageError> {
    let index = Index::parse(&ex.read_json_file("index.json")?)?;
    let mut out = LoadResult::default();
    let host = Platform::host();
    for desc in &index.manifests {
        let mut desc = desc.clone();
        let names: Vec<String> =
            desc.annotations.as_ref().and_then(|a| a.get("io.containerd.image.name").cloned()).into_iter().collect();
        // Resolve nested indexes to the host platform.
        for _ in 0..4 {
            if !media::is_index(&desc.media_type) {
                break;
            }
            let inner = Index::parse(&read_verified(ex, &desc)?)?;
            desc = inner
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_none_or(|p| p.os == host.os && p.architecture == host.architecture))
                .cloned()
                .ok_or_else(|| invalid("no manifest for this platform"))?;
        }
        if !media::is_manifest(&desc.media_type) {
            continue;
        }
        let manifest = Manifest::parse(&read_verified(ex, &desc)?)?;
        let cfg_bytes = read_verified(ex, &manifest.config)?;
        let config = ImageConfig::parse(&cfg_bytes)?;
        // Layer blobs may be compressed; each is verified against its descriptor digest.
        let chain = spec::chain_ids(&config.rootfs.diff_ids);
        if manifest.layers.len() != chain.len() {
            return Err(invalid("manifest and config disagree on the number of layers"));
        }
        for (i, l) in manifest.layers.iter().enumerate() {
            if store.layers().get(&chain[i])?.is_some() {
                continue;
            }
            let f = ex.open(&blob_path(&l.digest))?;
            let mut hr = HashingReader::new(f);
            let parent = if i == 0 { None } else { Some(&chain[i - 1]) };
            let rec = store.layers().create_from_tar(parent, &mut hr)?;
            let (d, _) = hr.finish();
            if d != l.digest {
                return Err(invalid(format!("layer blob {} has digest {d}", l.digest)));
            }
            if rec.diff_id != config.rootfs.diff_ids[i] {
                return Err(invalid(format!(
                    "layer {} does not match diff ID {}",
                    l.digest, config.rootfs.diff_ids[i]
                )));
            }
        }
        let img = store.add_image(&cfg_bytes, None, None)?;
        tag_loaded(store, &img, &names, &mut out)?;
    }
    Ok(out)
}

/// What to save: an image and the references to record for it.
pub struct SaveItem {
    pub image: Arc<Image>,
    pub refs: Vec<Reference>,
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

/// Writes images as one archive (OCI layout + docker-archive manifest).
pub fn save<W: Write>(store: &ImageStore, items: &[SaveItem], w: W) -> Result<W, ImageError> {
    let mut b = tar::Builder::new(w);
    let mut written = std::collections::HashSet::new();
    let mut legacy = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let err = io_ctx("writing archive");
    let mut dirs_done = false;
    for item in items {
        let img = &item.image;
        if !dirs_done {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, "blobs/", io::empty()).map_err(io_ctx("writing archive"))?;
            let mut h2 = h.clone();
            b.append_data(&mut h2, "blobs/sha256/", io::empty()).map_err(io_ctx("writing archive"))?;
            dirs_done = true;
        }
        let cfg = store.content().read(img.id(), MAX_JSON_BLOB)?;
        if written.insert(img.id().clone()) {
            append_file(&mut b, &blob_path(img.id()), &cfg).map_err(io_ctx("writing archive"))?;
        }
        let mut layer_descs = Vec::new();
        let mut layer_paths = Vec::new();
        for rec in store.image_layers(img)? {
            let path = blob_path(&rec.diff_id);
            let size = if written.insert(rec.diff_id.clone()) {
                write_layer(store, &mut b, &rec, &path)?
            } else {
                layer_size(store, &rec)?
            };
            layer_descs.push(Descriptor::new(media::OCI_LAYER, rec.diff_id.clone(), size));
            layer_paths.push(path);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::OCI_CONFIG, img.id().clone(), cfg.len() as u64),
            layers: layer_descs,
            subject: None,
            annotations: None,
        };
        let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let mdigest = Digest::of(&mbytes);
        if written.insert(mdigest.clone()) {
            append_file(&mut b, &blob_path(&mdigest), &mbytes).map_err(io_ctx("writing archive"))?;
        }
        let tags: Vec<&Reference> = item.refs.iter().filter(|r| r.tag().is_some()).collect();
        if tags.is_empty() {
            index.push(Descriptor::new(media::OCI_MANIFEST, mdigest.clone(), mbytes.len() as u64));
        }
        for r in &tags {
            let mut d = Descriptor::new(media::OCI_MANIFEST, mdigest.clone(), mbytes.len() as u64);
            let mut ann = BTreeMap::new();
            ann.insert("io.containerd.image.name".to_string(), r.to_string());
            ann.insert("org.opencontainers.image.ref.name".to_string(), r.tag().unwrap_or_default().to_string());
            d.annotations = Some(ann);
            index.push(d);
            repositories
                .entry(r.familiar_repository())
                .or_default()
                .insert(r.tag().unwrap_or_default().to_string(), img.id().hex().to_string());
        }
        legacy.push(LegacyManifestEntry {
            config: blob_path(img.id()),
            repo_tags: (!tags.is_empty()).then(|| tags.iter().map(|r| r.familiar()).collect()),
            layers: layer_paths,
        });
    }
    let idx = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        artifact_type: None,
        manifests: index,
        subject: None,
        annotations: None,
    };
    append_file(&mut b, "index.json", &serde_json::to_vec(&idx).expect("index serializes"))
        .map_err(io_ctx("writing archive"))?;
    append_file(&mut b, "manifest.json", &serde_json::to_vec(&legacy).expect("manifest serializes"))
        .map_err(io_ctx("writing archive"))?;
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_ctx("writing archive"))?;
    if !repositories.is_empty() {
        append_file(&mut b, "repositories", &serde_json::to_vec(&repositories).expect("serializes")).map_err(err)?;
    }
    b.into_inner().map_err(io_ctx("writing archive"))
}

/// Uncompressed size of a layer (its blob size when stored uncompressed).
fn layer_size(store: &ImageStore, rec: &crate::layers::LayerRecord) -> Result<u64, ImageError> {
    if rec.blob.digest == rec.diff_id {
        return Ok(rec.blob.size);
    }
    let mut r = store.layers().open_tar(rec)?;
    io::copy(&mut r, &mut io::sink()).map_err(io_ctx("reading layer"))
}

fn write_layer<W: Write>(
    store: &ImageStore,
    b: &mut tar::Builder<W>,
    rec: &crate::layers::LayerRecord,
    path: &str,
) -> Result<u64, ImageError> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    if rec.blob.digest == rec.diff_id {
        let f = store.content().open_blob(&rec.blob.digest)?;
        h.set_size(rec.blob.size);
        b.append_data(&mut h, path, f).map_err(io_ctx("writing archive"))?;
        return Ok(rec.blob.size);
    }
    // Compressed blob: the archive wants the plain tar, whose size we learn by decompressing.
    let tmp = store.tmp_dir().join(fsutil::random_name("save"));
    let result = (|| {
        let mut f =
            File::options().read(true).write(true).create_new(true).open(&tmp).map_err(io_ctx("writing archive"))?;
        let mut r = store.layers().open_tar(rec)?;
        let n = io::copy(&mut r, &mut f).map_err(io_ctx("decompressing layer"))?;
        io::Seek::seek(&mut f, io::SeekFrom::Start(0)).map_err(io_ctx("writing archive"))?;
        h.set_size(n);
        b.append_data(&mut h, path, f).map_err(io_ctx("writing archive"))?;
        Ok(n)
    })();
    let _ = fs::remove_file(&tmp);
    result
}
