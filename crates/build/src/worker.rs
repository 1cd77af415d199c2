//! What the builder needs from the machine, and nothing more: images (find, pull, record),
//! throwaway root filesystems, and containers to run RUN steps in. The daemon implements it
//! over its image store and container runtime (skiff-engine's `build` adapter); tests implement
//! it with plain directories. Like BuildKit's worker/executor split: the executor here decides
//! *what* happens (steps, cache, output), the worker *how*.
//!
//! Blocking methods do disk work and are called from blocking threads; the async ones wait on
//! the daemon (pulls, containers).

use std::future::Future;
use std::path::{Path, PathBuf};

use skiff_image::Reference;
use skiff_image::spec::RunConfig;

use crate::exec::Out;
use crate::{BuildError, Result};

/// An image as the builder sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// `sha256:<hex>`.
    pub id: String,
    pub parent: Option<String>,
    pub config: RunConfig,
}

impl ImageInfo {
    /// The 12-digit form the build output shows.
    pub fn short(&self) -> &str {
        skiff_common::units::short_id(&self.id)
    }
}

/// Resource limits of RUN steps (`docker build --memory`, `--cpu-shares`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLimits {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub shm_size: Option<i64>,
}

/// A RUN step's container.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub image: ImageInfo,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `default` (the daemon's bridge), `none`, `host` or a network's name.
    pub network: String,
    /// `SRC:DST[:ro]`, as `docker run -v`.
    pub binds: Vec<String>,
    /// (target, options).
    pub tmpfs: Vec<(String, String)>,
    /// `--add-host` entries.
    pub extra_hosts: Vec<String>,
    pub limits: RunLimits,
}

/// An image's filesystem mounted for a while (`RUN --mount=type=bind,from=...`).
#[derive(Debug, Clone)]
pub struct Mounted {
    /// What [`Worker::unmount_image`] takes back.
    pub key: String,
    pub root: PathBuf,
}

/// Changes made on a root filesystem: called once with the root's path.
pub type Change<'a> = &'a mut dyn FnMut(&Path) -> Result<()>;

pub trait Worker: Send + Sync + 'static {
    /// The image a `FROM` or `COPY --from` names: the local one unless `pull` or missing, then
    /// pulled (progress lines go to `out`).
    fn base_image(&self, name: &str, pull: bool, out: &Out) -> impl Future<Output = Result<ImageInfo>> + Send;
    /// A local image by name or ID.
    fn local_image(&self, name: &str) -> Result<ImageInfo>;
    /// A local image by ID, if it still exists.
    fn image(&self, id: &str) -> Option<ImageInfo>;
    /// Records an image with `config` and no new layer.
    fn commit_config(&self, parent: Option<&ImageInfo>, config: &RunConfig, created_by: String) -> Result<ImageInfo>;
    /// Runs `f` on a throwaway root filesystem holding `image` (empty without one); nothing
    /// it changes is kept.
    fn with_rootfs(&self, image: Option<&ImageInfo>, f: Change<'_>) -> Result<()>;
    /// Runs `f` on a throwaway root filesystem holding `parent` and records what it changed
    /// as a new image with `config`.
    fn commit_change(
        &self,
        parent: Option<&ImageInfo>,
        config: &RunConfig,
        created_by: String,
        f: Change<'_>,
    ) -> Result<ImageInfo>;
    /// Mounts `image`'s filesystem until [`Worker::unmount_image`].
    fn mount_image(&self, image: &ImageInfo) -> Result<Mounted>;
    fn unmount_image(&self, key: &str);
    /// Creates (does not start) a RUN step's container; returns its ID.
    fn create_container(&self, spec: RunSpec) -> impl Future<Output = Result<String>> + Send;
    /// Starts the container, sends what it prints to `out` and returns its exit code.
    fn run_container(&self, id: &str, out: &Out) -> impl Future<Output = Result<i64>> + Send;
    /// Records an exited container's filesystem changes as a new image on `parent`, leaving
    /// out the paths in `skip` (mount points; relative to the root) and the files the runtime
    /// itself put into the container.
    fn commit_container(
        &self,
        id: &str,
        parent: &ImageInfo,
        config: &RunConfig,
        created_by: String,
        skip: &[String],
    ) -> Result<ImageInfo>;
    /// Removes a step's container (killing it if it still runs).
    fn remove_container(&self, id: &str) -> impl Future<Output = ()> + Send;
    /// Keeps a step's container as an ordinary container (`--rm=false`).
    fn keep_container(&self, id: &str);
    /// The image a cache key recorded, if any.
    fn cache_get(&self, key: &str) -> Option<String>;
    fn cache_put(&self, key: &str, image_id: &str);
    fn tag(&self, reference: &Reference, image_id: &str) -> Result<()>;
    /// Where `RUN --mount=type=cache` directories live (kept across builds).
    fn cache_mount_dir(&self) -> PathBuf;
}

/// Runs `f` on a throwaway root of `image` and returns what it computed.
pub(crate) fn inspect_rootfs<W: Worker + ?Sized, T>(
    w: &W,
    image: Option<&ImageInfo>,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    w.with_rootfs(image, &mut |root| {
        let f = f.take().ok_or_else(|| BuildError::internal("root filesystem visited twice"))?;
        out = Some(f(root)?);
        Ok(())
    })?;
    out.ok_or_else(|| BuildError::internal("the worker did not mount the root filesystem"))
}
