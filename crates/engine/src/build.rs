//! The builder's worker: skiff-build's executor runs Dockerfiles; this adapter gives it the
//! engine's images (store, snapshots, pulls), RUN containers (the same isolation as `run`)
//! and the step cache (in the metadata database, so it survives restarts). Nothing else of
//! the engine is visible to the builder.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{ContainerCreateBody, HostConfig};
use skiff_build::worker::{Change, Mounted, RunSpec, Worker};
use skiff_build::{BuildError, Builder, ErrorKind};
use skiff_image::digest::Digest;
use skiff_image::spec::RunConfig;
use skiff_image::store::{Image, NewImage};
use skiff_image::{NewLayer, Reference, fsutil};

pub use skiff_build::worker::ImageInfo;
pub use skiff_build::{BuildOut, BuildRequest, Out, RunLimits};

use crate::Engine;
use crate::error::{EngineError, Kind, Result};

const CACHE: &str = "build_cache";

impl From<EngineError> for BuildError {
    fn from(e: EngineError) -> Self {
        let kind = match e.kind {
            Kind::NotFound => ErrorKind::NotFound,
            Kind::Invalid => ErrorKind::Invalid,
            Kind::Conflict => ErrorKind::Conflict,
            Kind::Unauthorized => ErrorKind::Unauthorized,
            Kind::Forbidden => ErrorKind::Forbidden,
            Kind::Unavailable => ErrorKind::Unavailable,
            Kind::NotModified | Kind::Internal => ErrorKind::Internal,
        };
        BuildError { kind, message: e.message, code: e.code, source: e.source }
    }
}

impl From<BuildError> for EngineError {
    fn from(e: BuildError) -> Self {
        let kind = match e.kind {
            ErrorKind::NotFound => Kind::NotFound,
            ErrorKind::Invalid => Kind::Invalid,
            ErrorKind::Conflict => Kind::Conflict,
            ErrorKind::Unauthorized => Kind::Unauthorized,
            ErrorKind::Forbidden => Kind::Forbidden,
            ErrorKind::Unavailable => Kind::Unavailable,
            ErrorKind::Internal => Kind::Internal,
        };
        EngineError { kind, message: e.message, code: e.code, source: e.source }
    }
}

fn info(img: &Arc<Image>) -> ImageInfo {
    ImageInfo {
        id: img.id().to_string(),
        parent: img.record.parent.as_ref().map(|p| p.to_string()),
        config: img.run_config(),
    }
}

/// The engine as the builder's worker.
struct EngineWorker(Arc<Engine>);

impl EngineWorker {
    fn image_of(&self, i: Option<&ImageInfo>) -> Result<Option<Arc<Image>>> {
        let Some(i) = i else { return Ok(None) };
        let id: Digest = i.id.parse().map_err(|_| EngineError::internal(format!("bad image ID {}", i.id)))?;
        self.0.images.store.get(&id).map(Some).ok_or_else(|| EngineError::not_found(format!("No such image: {}", i.id)))
    }

    /// Records an unmounted snapshot's changes as a new image on top of `parent`. With overlay
    /// the upper directory becomes the layer as it is (packed once for its digest); otherwise
    /// the diff goes through a tar. `skip`: paths left out.
    fn commit_snapshot(
        &self,
        key: &str,
        parent: Option<&Arc<Image>>,
        config: &RunConfig,
        created_by: String,
        skip: &[&str],
    ) -> Result<ImageInfo> {
        let store = &self.0.images.store;
        let snaps = store.snapshots();
        let top = parent.and_then(|i| i.top_layer().cloned());
        let new = NewImage {
            parent: parent.map(|i| i.id().clone()),
            run_config: config.clone(),
            created_by: Some(created_by),
            ..Default::default()
        };
        if let Some(dir) = snaps.upper_dir(key) {
            return Ok(info(&store.create_image(new, Some(NewLayer::Upper { dir: &dir, skip }))?));
        }
        let tmp = store.tmp_dir().join(fsutil::random_name("layer"));
        let r = (|| -> Result<ImageInfo> {
            let file = std::fs::File::create(&tmp)?;
            snaps.diff(key, top.as_ref(), std::io::BufWriter::new(file), skip)?.flush()?;
            let mut reader = std::io::BufReader::new(std::fs::File::open(&tmp)?);
            Ok(info(&store.create_image(new, Some(NewLayer::Tar(&mut reader)))?))
        })();
        let _ = std::fs::remove_file(&tmp);
        r
    }
}

impl Worker for EngineWorker {
    async fn base_image(&self, name: &str, pull: bool, out: &Out) -> skiff_build::Result<ImageInfo> {
        let store = &self.0.images.store;
        let r = Reference::parse_normalized(name).map_err(|e| BuildError::invalid(e.to_string()))?.with_default_tag();
        if !pull && let Ok(i) = store.resolve(name) {
            return Ok(info(&i));
        }
        let out2 = out.clone();
        let sink: skiff_distribution::Sink = Arc::new(move |p| {
            if let skiff_distribution::Progress::Status(s) = p {
                out2(BuildOut::Stream(format!("{s}\n")));
            }
        });
        match self.0.images.pull(&r, None, None, sink).await {
            Ok(o) => Ok(info(&o.image)),
            Err(e) => match store.resolve(name) {
                Ok(i) if pull => Ok(info(&i)),
                _ => Err(e.into()),
            },
        }
    }

    fn local_image(&self, name: &str) -> skiff_build::Result<ImageInfo> {
        Ok(info(&self.0.images.store.resolve(name).map_err(EngineError::from)?))
    }

    fn image(&self, id: &str) -> Option<ImageInfo> {
        let id: Digest = id.parse().ok()?;
        self.0.images.store.get(&id).map(|i| info(&i))
    }

    fn commit_config(
        &self,
        parent: Option<&ImageInfo>,
        config: &RunConfig,
        created_by: String,
    ) -> skiff_build::Result<ImageInfo> {
        let parent = self.image_of(parent)?;
        let new = NewImage {
            parent: parent.map(|i| i.id().clone()),
            run_config: config.clone(),
            created_by: Some(created_by),
            ..Default::default()
        };
        Ok(info(&self.0.images.store.create_image(new, None).map_err(EngineError::from)?))
    }

    fn with_rootfs(&self, image: Option<&ImageInfo>, f: Change<'_>) -> skiff_build::Result<()> {
        let image = self.image_of(image)?;
        let snaps = self.0.images.store.snapshots();
        let key = fsutil::random_name("build");
        let top = image.and_then(|i| i.top_layer().cloned());
        snaps.prepare(&key, top.as_ref()).map_err(EngineError::from)?;
        let r = (|| {
            let root = snaps.mount(&key, top.as_ref()).map_err(EngineError::from)?;
            f(&root)
        })();
        let _ = snaps.unmount(&key);
        let _ = snaps.remove(&key);
        r
    }

    fn commit_change(
        &self,
        parent: Option<&ImageInfo>,
        config: &RunConfig,
        created_by: String,
        f: Change<'_>,
    ) -> skiff_build::Result<ImageInfo> {
        let parent = self.image_of(parent)?;
        let snaps = self.0.images.store.snapshots();
        let key = fsutil::random_name("build");
        let top = parent.as_ref().and_then(|i| i.top_layer().cloned());
        snaps.prepare(&key, top.as_ref()).map_err(EngineError::from)?;
        let r = (|| -> skiff_build::Result<ImageInfo> {
            let root = snaps.mount(&key, top.as_ref()).map_err(EngineError::from)?;
            f(&root)?;
            snaps.unmount(&key).map_err(EngineError::from)?;
            Ok(self.commit_snapshot(&key, parent.as_ref(), config, created_by, &[])?)
        })();
        let _ = snaps.unmount(&key);
        let _ = snaps.remove(&key);
        r
    }

    fn mount_image(&self, image: &ImageInfo) -> skiff_build::Result<Mounted> {
        let img = self.image_of(Some(image))?.ok_or_else(|| BuildError::internal("no image"))?;
        let snaps = self.0.images.store.snapshots();
        let key = fsutil::random_name("buildmnt");
        snaps.prepare(&key, img.top_layer()).map_err(EngineError::from)?;
        match snaps.mount(&key, img.top_layer()) {
            Ok(root) => Ok(Mounted { key, root }),
            Err(e) => {
                let _ = snaps.remove(&key);
                Err(EngineError::from(e).into())
            }
        }
    }

    fn unmount_image(&self, key: &str) {
        let snaps = self.0.images.store.snapshots();
        let _ = snaps.unmount(key);
        let _ = snaps.remove(key);
    }

    async fn create_container(&self, spec: RunSpec) -> skiff_build::Result<String> {
        let l = spec.limits;
        let body = ContainerCreateBody {
            image: Some(spec.image.id),
            cmd: Some(spec.argv),
            entrypoint: Some(vec![]),
            env: Some(spec.env),
            working_dir: spec.working_dir,
            user: spec.user,
            host_config: Some(HostConfig {
                network_mode: Some(if spec.network == "default" { "bridge".into() } else { spec.network }),
                binds: Some(spec.binds),
                tmpfs: Some(spec.tmpfs.into_iter().collect()),
                extra_hosts: Some(spec.extra_hosts).filter(|h| !h.is_empty()),
                memory: l.memory,
                memory_swap: l.memory_swap,
                cpu_shares: l.cpu_shares,
                cpuset_cpus: l.cpuset_cpus,
                cpu_period: l.cpu_period,
                cpu_quota: l.cpu_quota,
                shm_size: l.shm_size,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(self.0.containers.create_for_build(body).await?.0)
    }

    async fn run_container(&self, id: &str, out: &Out) -> skiff_build::Result<i64> {
        let containers = &self.0.containers;
        containers.start(id).await?;
        let opts = crate::container::logs::LogOptions {
            stdout: true,
            stderr: true,
            follow: true,
            tail: None,
            since: None,
            until: None,
        };
        let (_, mut logs) = containers.logs(id, opts)?;
        while let Some(l) = logs.recv().await {
            let text = String::from_utf8_lossy(&l.data);
            // As the classic builder: what a step writes to stderr shows in red.
            out(BuildOut::Stream(match l.stream {
                skiff_runtime::logfile::Stream::Stderr => format!("\x1b[91m{text}\x1b[0m"),
                _ => text.into_owned(),
            }));
        }
        Ok(containers.wait(id, crate::container::WaitCondition::NotRunning).await?.0)
    }

    fn commit_container(
        &self,
        id: &str,
        parent: &ImageInfo,
        config: &RunConfig,
        created_by: String,
        skip: &[String],
    ) -> skiff_build::Result<ImageInfo> {
        let parent = self.image_of(Some(parent))?;
        let rec = self.0.containers.get(id)?.record();
        // The step's processes are gone; its root filesystem may still be mounted until the
        // exit handling gets to it.
        self.0.images.store.snapshots().unmount(&rec.id).map_err(EngineError::from)?;
        let mut skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        skip.extend(crate::container::RUNTIME_FILES);
        Ok(self.commit_snapshot(&rec.id, parent.as_ref(), config, created_by, &skip)?)
    }

    async fn remove_container(&self, id: &str) {
        let _ = self.0.containers.remove(id, true, true).await;
    }

    fn keep_container(&self, id: &str) {
        self.0.containers.keep_build_container(id);
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        let id: Option<Digest> = self.0.db.get(CACHE, key).ok().flatten();
        id.map(|d| d.to_string())
    }

    fn cache_put(&self, key: &str, image_id: &str) {
        if let Ok(d) = image_id.parse::<Digest>() {
            let _ = self.0.db.put(CACHE, key, &d, skiff_image::db::Durability::Lazy);
        }
    }

    fn tag(&self, reference: &Reference, image_id: &str) -> skiff_build::Result<()> {
        let d: Digest = image_id.parse().map_err(|_| BuildError::internal(format!("bad image ID {image_id}")))?;
        self.0.images.store.tag(reference, &d).map_err(EngineError::from)?;
        Ok(())
    }

    fn cache_mount_dir(&self) -> PathBuf {
        self.0.config.data_root.join("build-cache-mounts")
    }
}

/// A build's context, unpacked under the data root; [`BuildContext::remove`] takes it (and
/// its secrets) away when the build is over.
#[derive(Debug)]
pub struct BuildContext {
    pub dir: PathBuf,
    /// `skiff build --secret`'s files, moved out of the context (no COPY can see them).
    pub secrets: Option<PathBuf>,
}

impl BuildContext {
    /// Removes the context and its secrets (blocking).
    pub fn remove(&self) {
        let _ = fsutil::remove_all(&self.dir);
        if let Some(s) = &self.secrets {
            let _ = fsutil::remove_all(s);
        }
    }
}

/// Where the skiff CLI puts build secrets inside the context tar.
const SECRETS_IN_CONTEXT: &str = ".skiff-build-secrets";

impl Engine {
    /// Unpacks an untrusted build context (a tar, maybe compressed) path-safely into a private
    /// directory: names with `..` resolve against the context's root (as dockerd's chrooted
    /// extraction makes them), whiteout names are plain files, what follows the archive is read
    /// and dropped. Blocking. A context that cannot be unpacked is the request's fault and
    /// leaves nothing behind.
    /// Takes the daemon's data root rather than the engine, so callers can run it on the
    /// blocking pool.
    pub fn unpack_build_context(data_root: &std::path::Path, mut reader: impl std::io::Read) -> Result<BuildContext> {
        let tmp = data_root.join("tmp");
        let dir = tmp.join(fsutil::random_name("context"));
        std::fs::create_dir_all(&dir)?;
        let unpacked = (|| -> std::result::Result<(), String> {
            let (_, tar) = skiff_image::layer::decompress(&mut reader).map_err(|e| e.to_string())?;
            let opts = skiff_image::layer::UnpackOptions {
                whiteouts: skiff_image::layer::WhiteoutMode::Literal,
                rooted_dotdot: true,
                ..Default::default()
            };
            skiff_image::layer::unpack(tar, &dir, &opts).map_err(|e| crate::error::error_chain(&e))?;
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| e.to_string())?;
            Ok(())
        })();
        if let Err(e) = unpacked {
            let _ = fsutil::remove_all(&dir);
            return Err(EngineError::invalid(format!("invalid build context: {e}")));
        }
        let inside = dir.join(SECRETS_IN_CONTEXT);
        let secrets = if inside.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            let out = tmp.join(fsutil::random_name("secrets"));
            if let Err(e) = std::fs::rename(&inside, &out) {
                let _ = fsutil::remove_all(&dir);
                return Err(EngineError::from_cause(e));
            }
            let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700));
            Some(out)
        } else {
            None
        };
        Ok(BuildContext { dir, secrets })
    }

    /// Runs a build; returns the final image.
    pub async fn build(self: &Arc<Self>, req: BuildRequest, out: Out) -> Result<ImageInfo> {
        Ok(Builder::new(Arc::new(EngineWorker(self.clone()))).build(req, out).await?)
    }

    /// Removes every build cache entry; returns how many.
    pub fn builder_prune(&self) -> Result<usize> {
        let all: Vec<(String, Digest)> = self.db.list(CACHE)?;
        for (k, _) in &all {
            self.db.delete(CACHE, k)?;
        }
        Ok(all.len())
    }
}

/// `docker commit --change` / `docker import --change` lines applied to a config.
pub fn apply_changes(run: &mut RunConfig, changes: &[String]) -> Result<()> {
    Ok(skiff_build::exec::changes::apply(run, changes)?)
}
