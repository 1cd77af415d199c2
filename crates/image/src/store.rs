//! The image store: images (by config digest), their tags, and the blobs and layers under them.
//!
//! An image ID is the digest of its config bytes as stored, so IDs survive save/load and
//! push/pull. Records live in the metadata database; parsed configs are cached in memory so
//! the container hot path never re-reads them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::content::{ContentError, ContentStore};
use crate::db::{Db, DbError, Durability};
use crate::digest::Digest;
use crate::layers::{Driver, LayerError, LayerRecord, LayerStore};
use crate::reference::{Reference, ReferenceError};
use crate::snapshot::{SnapshotError, Snapshots};
use crate::spec::{self, Descriptor, History, ImageConfig, MAX_JSON_BLOB, Platform, RootFs, RunConfig, SpecError};
use skiff_common::timefmt;

const IMAGES: &str = "images";
const TAGS: &str = "tags";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    Ambiguous(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the store remembers of an image beyond its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    /// Local parent (the image a commit or build step started from).
    #[serde(default)]
    pub parent: Option<Digest>,
    /// The manifest it was pulled or loaded with, if any (kept for push and repo digests).
    #[serde(default)]
    pub manifest: Option<Descriptor>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Sum of the layers' content sizes.
    pub size: u64,
    /// When this daemon got the image.
    pub added: String,
}

/// An image with its parsed config.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// Chain IDs, bottom layer first.
    pub chain: Vec<Digest>,
}

impl Image {
    pub fn id(&self) -> &Digest {
        &self.record.id
    }
    /// The top layer's chain ID (the snapshot parent), `None` for an image without layers.
    pub fn top_layer(&self) -> Option<&Digest> {
        self.chain.last()
    }
    pub fn run_config(&self) -> RunConfig {
        self.config.run_config()
    }
}

/// The filesystem change of a new image.
pub enum NewLayer<'a> {
    /// A layer tar (compressed or not).
    Tar(&'a mut dyn Read),
    /// An unmounted overlay upper directory, moved into the layer store (see
    /// `LayerStore::create_from_upper`); `skip` lists top-level mount points left out.
    Upper { dir: &'a std::path::Path, skip: &'a [&'a str] },
}

/// Configuration for a new image made from a parent and one new layer (commit, build, import).
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub parent: Option<Digest>,
    pub run_config: RunConfig,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Extra top-level config fields (Docker's `container`, `container_config`, ...).
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The platform an image without a parent is for (`docker import --platform`); the
    /// host's when `None`. An image with a parent is for its parent's.
    pub platform: Option<Platform>,
}

pub struct ImageStore {
    content: ContentStore,
    layers: LayerStore,
    snapshots: Snapshots,
    db: Arc<Db>,
    tmp: PathBuf,
    cache: RwLock<HashMap<Digest, Arc<Image>>>,
    tags: RwLock<BTreeMap<String, Digest>>,
    /// Serializes changes to images and tags.
    write: Mutex<()>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore").finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens the store under `root` (data-root/image), with the given storage driver.
    /// Opens the store; `max_image_size` limits the bytes of file content one image's layers
    /// may unpack to.
    pub fn open(
        root: PathBuf,
        driver: Driver,
        db: Arc<Db>,
        max_image_size: Option<u64>,
    ) -> Result<ImageStore, ImageError> {
        let content = ContentStore::open(root.join("content"))?;
        let layers = LayerStore::open(root.join("layers"), driver, db.clone(), content.clone())?
            .with_max_image_size(max_image_size);
        let snapshots = Snapshots::open(root.join("snapshots"), layers.clone())?;
        snapshots.clean_tmp();
        let tmp = root.join("tmp");
        let _ = skiff_common::fsutil::remove_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|source| ImageError::Io { what: tmp.display().to_string(), source })?;
        let store = ImageStore {
            content,
            layers,
            snapshots,
            db,
            tmp,
            cache: RwLock::new(HashMap::new()),
            tags: RwLock::new(BTreeMap::new()),
            write: Mutex::new(()),
        };
        let tags: Vec<(String, Digest)> = store.db.list(TAGS)?;
        *store.tags.write().expect("tags lock") = tags.into_iter().collect();
        for (_, rec) in store.db.list::<ImageRecord>(IMAGES)? {
            match store.load_image(rec) {
                Ok(img) => {
                    store.cache.write().expect("cache lock").insert(img.record.id.clone(), Arc::new(img));
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable image record"),
            }
        }
        Ok(store)
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
    pub fn driver(&self) -> Driver {
        self.layers.driver()
    }
    /// A scratch directory on the store's filesystem (emptied at open).
    pub fn tmp_dir(&self) -> &std::path::Path {
        &self.tmp
    }

    fn load_image(&self, record: ImageRecord) -> Result<Image, ImageError> {
        let bytes = self.content.read(&record.id, MAX_JSON_BLOB)?;
        let config = ImageConfig::parse(&bytes)?;
        let chain = spec::chain_ids(&config.rootfs.diff_ids);
        Ok(Image { record, config, chain })
    }

    /// Every image, newest config first.
    pub fn list(&self) -> Vec<Arc<Image>> {
        let mut v: Vec<_> = self.cache.read().expect("cache lock").values().cloned().collect();
        v.sort_by(|a, b| b.config.created.cmp(&a.config.created).then(a.id().cmp(b.id())));
        v
    }

    pub fn get(&self, id: &Digest) -> Option<Arc<Image>> {
        self.cache.read().expect("cache lock").get(id).cloned()
    }

    /// Tags (and digest references) pointing at an image, full form.
    pub fn refs_of(&self, id: &Digest) -> Vec<Reference> {
        self.tags
            .read()
            .expect("tags lock")
            .iter()
            .filter(|(_, v)| *v == id)
            .filter_map(|(k, _)| Reference::parse_normalized(k).ok())
            .collect()
    }

    pub fn all_refs(&self) -> Vec<(Reference, Digest)> {
        self.tags
            .read()
            .expect("tags lock")
            .iter()
            .filter_map(|(k, v)| Reference::parse_normalized(k).ok().map(|r| (r, v.clone())))
            .collect()
    }

    /// Finds an image by reference, full ID, or unambiguous ID prefix (Docker's order).
    pub fn resolve(&self, name: &str) -> Result<Arc<Image>, ImageError> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if let Ok(d) = Digest::from_hex(hex)
            && let Some(img) = self.get(&d)
        {
            return Ok(img);
        }
        if let Ok(r) = Reference::parse_normalized(name) {
            let r = r.with_default_tag();
            if let Some(id) = self.tags.read().expect("tags lock").get(&r.to_string()).cloned()
                && let Some(img) = self.get(&id)
            {
                return Ok(img);
            }
        }
        let is_hex_prefix =
            !hex.is_empty() && hex.len() < 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex_prefix {
            let cache = self.cache.read().expect("cache lock");
            let hits: Vec<_> = cache.values().filter(|i| i.id().hex().starts_with(hex)).cloned().collect();
            match hits.len() {
                1 => return Ok(hits.into_iter().next().expect("one hit")),
                0 => {}
                _ => {
                    return Err(ImageError::Ambiguous(format!("multiple IDs found with provided prefix: {hex}")));
                }
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// Points a reference at an image (replacing what it pointed at).
    pub fn tag(&self, r: &Reference, id: &Digest) -> Result<Option<Digest>, ImageError> {
        if r.familiar_repository() == "sha256" {
            // `sha256:<tag>` would read as an image ID.
            return Err(ImageError::Invalid(
                "refusing to create an ambiguous tag using digest algorithm as name".into(),
            ));
        }
        let _w = self.write.lock().expect("write lock");
        if self.get(id).is_none() {
            return Err(ImageError::NotFound(id.to_string()));
        }
        let key = r.to_string();
        self.db.put(TAGS, &key, id, Durability::Sync)?;
        Ok(self.tags.write().expect("tags lock").insert(key, id.clone()))
    }

    /// Removes a reference; returns the image it pointed at.
    pub fn untag(&self, r: &Reference) -> Result<Option<Digest>, ImageError> {
        let _w = self.write.lock().expect("write lock");
        let key = r.to_string();
        let old = self.tags.read().expect("tags lock").get(&key).cloned();
        if old.is_some() {
            self.db.delete(TAGS, &key)?;
            self.tags.write().expect("tags lock").remove(&key);
        }
        Ok(old)
    }

    /// Records an image whose config blob and layers are already stored.
    pub fn add_image(
        &self,
        config_bytes: &[u8],
        parent: Option<Digest>,
        manifest: Option<Descriptor>,
    ) -> Result<Arc<Image>, ImageError> {
        let config = ImageConfig::parse(config_bytes)?;
        let id = self.content.put(config_bytes)?;
        let chain = spec::chain_ids(&config.rootfs.diff_ids);
        // Under the write lock, which `delete` holds while it removes layers no image uses: a
        // layer found here stays (this image uses it from now on), and one removed meanwhile
        // (a pull that reused it while its last image went) fails this image cleanly instead
        // of recording an image whose layer is gone.
        let _w = self.write.lock().expect("write lock");
        let mut size = 0;
        for c in &chain {
            let rec = self.layers.get(c)?.ok_or_else(|| LayerError::NotFound(c.clone()))?;
            size += rec.size;
        }
        if let Some(existing) = self.get(&id) {
            return Ok(existing);
        }
        let record =
            ImageRecord { id: id.clone(), parent, manifest, repo_digests: Vec::new(), size, added: timefmt::now() };
        self.db.put(IMAGES, id.hex(), &record, Durability::Sync)?;
        let img = Arc::new(Image { record, config, chain });
        self.cache.write().expect("cache lock").insert(id, img.clone());
        Ok(img)
    }

    /// Makes an image from a parent image (or none) plus one layer (or none: a metadata-only
    /// change). Used by import, commit and the builder.
    pub fn create_image(&self, new: NewImage, layer: Option<NewLayer<'_>>) -> Result<Arc<Image>, ImageError> {
        let parent = match &new.parent {
            Some(p) => Some(self.get(p).ok_or_else(|| ImageError::NotFound(p.to_string()))?),
            None => None,
        };
        let mut diff_ids = parent.as_ref().map(|p| p.config.rootfs.diff_ids.clone()).unwrap_or_default();
        let mut history = parent.as_ref().map(|p| p.config.history.clone()).unwrap_or_default();
        let created = timefmt::now();
        let mut empty_layer = true;
        if let Some(layer) = layer {
            let below = parent.as_ref().and_then(|p| p.top_layer());
            let rec: LayerRecord = match layer {
                NewLayer::Tar(tar) => self.layers.create_from_tar(below, tar)?,
                NewLayer::Upper { dir, skip } => self.layers.create_from_upper(below, dir, skip)?,
            };
            diff_ids.push(rec.diff_id);
            empty_layer = false;
        }
        history.push(History {
            created: Some(created.clone()),
            created_by: new.created_by.clone(),
            author: new.author.clone(),
            comment: new.comment.clone(),
            empty_layer,
        });
        let host = new.platform.clone().unwrap_or_else(Platform::host);
        let config = ImageConfig {
            created: Some(created),
            author: new.author.clone(),
            architecture: parent.as_ref().map(|p| p.config.architecture.clone()).unwrap_or(host.architecture),
            os: parent.as_ref().map(|p| p.config.os.clone()).unwrap_or(host.os),
            variant: parent.as_ref().and_then(|p| p.config.variant.clone()).or(host.variant),
            config: Some(new.run_config),
            rootfs: RootFs { kind: "layers".into(), diff_ids },
            history,
            comment: new.comment,
            extra: new.extra,
        };
        self.add_image(&config.to_bytes(), new.parent, None)
    }

    /// Deletes an image record (tags must be gone) and every layer and blob nothing else uses.
    pub fn delete(&self, id: &Digest) -> Result<(), ImageError> {
        let _w = self.write.lock().expect("write lock");
        let Some(img) = self.get(id) else {
            return Err(ImageError::NotFound(id.to_string()));
        };
        self.db.delete(IMAGES, id.hex())?;
        self.cache.write().expect("cache lock").remove(id);
        let (used_layers, used_blobs) = {
            let cache = self.cache.read().expect("cache lock");
            let mut layers = HashSet::new();
            let mut blobs = HashSet::new();
            for other in cache.values() {
                layers.extend(other.chain.iter().cloned());
                blobs.insert(other.id().clone());
                if let Some(m) = &other.record.manifest {
                    blobs.insert(m.digest.clone());
                }
            }
            (layers, blobs)
        };
        for c in img.chain.iter().rev() {
            if used_layers.contains(c) {
                continue;
            }
            if let Some(rec) = self.layers.get(c)? {
                self.layers.remove(c)?;
                let remaining = self.layers.list()?;
                let blob_used = remaining.iter().any(|l| l.blob.digest == rec.blob.digest);
                if !blob_used && !used_blobs.contains(&rec.blob.digest) {
                    self.content.delete(&rec.blob.digest)?;
                }
                // The compressed copy made for (or pulled with) this content goes with the last
                // layer that has it.
                if !remaining.iter().any(|l| l.diff_id == rec.diff_id)
                    && let Some(d) = self.layers.take_dist_blob(&rec.diff_id)?
                    && !used_blobs.contains(&d.digest)
                    && !remaining.iter().any(|l| l.blob.digest == d.digest)
                {
                    self.content.delete(&d.digest)?;
                }
            }
        }
        if !used_blobs.contains(id) {
            self.content.delete(id)?;
        }
        if let Some(m) = &img.record.manifest
            && !used_blobs.contains(&m.digest)
        {
            self.content.delete(&m.digest)?;
        }
        Ok(())
    }

    /// Images that have children (a local parent link pointing at them).
    pub fn children_of(&self, id: &Digest) -> Vec<Digest> {
        self.cache
            .read()
            .expect("cache lock")
            .values()
            .filter(|i| i.record.parent.as_ref() == Some(id))
            .map(|i| i.id().clone())
            .collect()
    }

    /// Updates a stored record (repo digests after a pull or push).
    pub fn update_record(&self, record: ImageRecord) -> Result<(), ImageError> {
        let _w = self.write.lock().expect("write lock");
        let Some(img) = self.get(&record.id) else {
            return Err(ImageError::NotFound(record.id.to_string()));
        };
        self.db.put(IMAGES, record.id.hex(), &record, Durability::Sync)?;
        let new = Image { record: record.clone(), config: img.config.clone(), chain: img.chain.clone() };
        self.cache.write().expect("cache lock").insert(record.id.clone(), Arc::new(new));
        Ok(())
    }

    /// The layer records of an image, bottom first.
    pub fn image_layers(&self, img: &Image) -> Result<Vec<LayerRecord>, ImageError> {
        img.chain
            .iter()
            .map(|c| self.layers.get(c)?.ok_or_else(|| ImageError::Layer(LayerError::NotFound(c.clone()))))
            .collect()
    }

    /// Total bytes of blobs in the store (for `system df`'s reclaimable figures).
    pub fn unique_size(&self, img: &Image, shared: &HashMap<Digest, usize>) -> u64 {
        img.chain
            .iter()
            .filter(|c| shared.get(*c).copied().unwrap_or(0) <= 1)
            .filter_map(|c| self.layers.get(c).ok().flatten())
            .map(|r| r.size)
            .sum()
    }
}
