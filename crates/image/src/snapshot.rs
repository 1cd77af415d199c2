//! Container snapshots: a writable root filesystem on top of an image's layers.
//!
//! Overlay: `snapshots/<key>/{upper,work,merged}`, mounted with the image's layer directories
//! as lower dirs. Copy: `snapshots/<key>/merged` is a full copy of the image's tree. Either way
//! the container sees `merged`, and `diff`/`changes` report what the container changed.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layer::{self, Change};
use crate::layers::{Driver, LayerError, LayerStore, copy_tree};
use skiff_common::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("mounting snapshot {key}: {source}")]
    Mount {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("unmounting snapshot {key}: {source}")]
    Unmount {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    layers: LayerStore,
    overlay_extra: String,
}

/// Mount options beyond the directories: keep the upper dir in the plain format our diff
/// understands (no index, redirects or metacopy), where the kernel knows these options.
fn overlay_extra_options() -> String {
    let mut o = String::new();
    for (param, opt) in [("index", "index=off"), ("redirect_dir", "redirect_dir=off"), ("metacopy", "metacopy=off")] {
        if Path::new("/sys/module/overlay/parameters").join(param).exists() {
            o.push(',');
            o.push_str(opt);
        }
    }
    o
}

/// Whether overlayfs works for directories under `dir` (used to pick the driver).
pub fn overlay_supported(dir: &Path) -> bool {
    let probe = dir.join(fsutil::random_name("overlay-probe"));
    let ok = (|| -> io::Result<bool> {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(probe.join(d))?;
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            probe.join("lower").display(),
            probe.join("upper").display(),
            probe.join("work").display()
        );
        let merged = probe.join("merged");
        if rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(std::ffi::CString::new(opts.as_str()).map_err(io::Error::other)?.as_c_str()),
        )
        .is_err()
        {
            return Ok(false);
        }
        let _ = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH);
        Ok(true)
    })()
    .unwrap_or(false);
    let _ = fsutil::remove_all(&probe);
    ok
}

impl Snapshots {
    pub fn open(root: PathBuf, layers: LayerStore) -> Result<Snapshots, SnapshotError> {
        fs::create_dir_all(&root).map_err(|source| SnapshotError::Io { key: String::new(), source })?;
        Ok(Snapshots { root, layers, overlay_extra: overlay_extra_options() })
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Where the container's root filesystem appears.
    pub fn rootfs(&self, key: &str) -> PathBuf {
        self.dir(key).join("merged")
    }

    fn io(key: &str) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io { key: key.to_string(), source }
    }

    /// Creates the snapshot's directories (and, when copying, the copy of the image).
    pub fn prepare(&self, key: &str, top: Option<&Digest>) -> Result<(), SnapshotError> {
        let d = self.dir(key);
        match self.layers.driver() {
            Driver::Overlay => {
                for sub in ["upper", "work", "merged"] {
                    fs::create_dir_all(d.join(sub)).map_err(Self::io(key))?;
                }
            }
            Driver::Copy => {
                let tmp = self.root.join(fsutil::random_name("tmp"));
                fs::create_dir_all(tmp.join("merged")).map_err(Self::io(key))?;
                if let Some(t) = top {
                    copy_tree(&self.layers.dir(t), &tmp.join("merged")).map_err(Self::io(key))?;
                }
                fs::rename(&tmp, &d).map_err(Self::io(key))?;
            }
        }
        Ok(())
    }

    /// Lower directories, top first.
    fn lower_dirs(&self, top: Option<&Digest>) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = top.cloned();
        while let Some(c) = cur {
            let rec = self.layers.get(&c)?.ok_or_else(|| LayerError::NotFound(c.clone()))?;
            out.push(self.layers.dir(&c));
            cur = rec.parent;
        }
        if out.is_empty() {
            out.push(self.layers.empty_dir());
        }
        Ok(out)
    }

    pub fn is_mounted(&self, key: &str) -> bool {
        let merged = self.rootfs(key);
        match (fs::metadata(&merged), fs::metadata(self.dir(key))) {
            (Ok(a), Ok(b)) => a.dev() != b.dev(),
            _ => false,
        }
    }

    /// Mounts the snapshot (overlay) if it is not mounted yet; returns the rootfs path.
    pub fn mount(&self, key: &str, top: Option<&Digest>) -> Result<PathBuf, SnapshotError> {
        let merged = self.rootfs(key);
        if self.layers.driver() == Driver::Copy || self.is_mounted(key) {
            return Ok(merged);
        }
        let d = self.dir(key);
        let lowers = self.lower_dirs(top)?;
        let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={}{}",
            d.join("upper").display(),
            d.join("work").display(),
            self.overlay_extra
        );
        let res = if opts.len() < 4000 {
            std::ffi::CString::new(opts).map_err(io::Error::other).and_then(|o| {
                rustix::mount::mount(
                    "overlay",
                    &merged,
                    "overlay",
                    rustix::mount::MountFlags::empty(),
                    Some(o.as_c_str()),
                )
                .map_err(io::Error::from)
            })
        } else {
            self.mount_many(&merged, &lowers, &d)
        };
        res.map_err(|source| SnapshotError::Mount { key: key.to_string(), source })?;
        Ok(merged)
    }

    /// Mounts with the new mount API, one lower dir at a time (`lowerdir+`, Linux 6.8), for
    /// images whose layer list does not fit in one page of mount options.
    fn mount_many(&self, merged: &Path, lowers: &[PathBuf], d: &Path) -> io::Result<()> {
        use rustix::mount::*;
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in lowers {
            fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
        }
        fsconfig_set_string(&fs, "upperdir", d.join("upper").as_path())?;
        fsconfig_set_string(&fs, "workdir", d.join("work").as_path())?;
        for opt in self.overlay_extra.split(',').filter(|o| !o.is_empty()) {
            if let Some((k, v)) = opt.split_once('=') {
                fsconfig_set_string(&fs, k, v)?;
            }
        }
        fsconfig_create(&fs)?;
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
        move_mount(&mnt, "", rustix::fs::CWD, merged, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
        Ok(())
    }

    pub fn unmount(&self, key: &str) -> Result<(), SnapshotError> {
        if self.layers.driver() == Driver::Overlay && self.is_mounted(key) {
            match rustix::mount::unmount(self.rootfs(key), rustix::mount::UnmountFlags::DETACH) {
                // Unmounted meanwhile by someone else (exit handling and removal race).
                Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(SnapshotError::Unmount { key: key.to_string(), source: e.into() }),
            }
        }
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.unmount(key)?;
        let d = self.dir(key);
        if !d.exists() {
            return Ok(());
        }
        let trash = self.root.join(fsutil::random_name("tmp"));
        fs::rename(&d, &trash).map_err(Self::io(key))?;
        fsutil::remove_all(&trash).map_err(Self::io(key))
    }

    /// Removes leftovers of interrupted prepares and removals, and the builder's throwaway
    /// snapshots (`build-*`, `buildmnt-*`) of a daemon killed mid-build — unmounted first. Only
    /// called while nothing else uses the store (at open).
    pub fn clean_tmp(&self) {
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("build-") || name.starts_with("buildmnt-") {
                    if self.is_mounted(&name)
                        && rustix::mount::unmount(e.path().join("merged"), rustix::mount::UnmountFlags::DETACH).is_err()
                    {
                        continue;
                    }
                    let _ = fsutil::remove_all(&e.path());
                } else if name.starts_with("tmp-") {
                    let _ = fsutil::remove_all(&e.path());
                }
            }
        }
    }

    /// The keys of the snapshots on disk (not the builder's or temporary ones).
    pub fn keys(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else { return Vec::new() };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("tmp-") && !n.starts_with("build-") && !n.starts_with("buildmnt-"))
            .collect()
    }

    pub fn exists(&self, key: &str) -> bool {
        self.dir(key).exists()
    }

    /// Writes what the container changed as a layer tar. `skip` lists top-level paths the
    /// runtime put there (mount points) that are not the container's own changes.
    pub fn diff<W: Write>(&self, key: &str, top: Option<&Digest>, w: W, skip: &[&str]) -> Result<W, SnapshotError> {
        match self.layers.driver() {
            Driver::Overlay => layer::pack_overlay_diff(&self.dir(key).join("upper"), w, skip).map_err(Self::io(key)),
            Driver::Copy => {
                let base = top.map(|t| self.layers.dir(t)).unwrap_or_else(|| self.layers.empty_dir());
                layer::pack::pack_naive_diff(&base, &self.rootfs(key), w, skip).map_err(Self::io(key))
            }
        }
    }

    pub fn changes(&self, key: &str, top: Option<&Digest>, skip: &[&str]) -> Result<Vec<Change>, SnapshotError> {
        match self.layers.driver() {
            Driver::Overlay => {
                let lowers = self
                    .lower_dirs(top)?
                    .iter()
                    .map(|l| skiff_common::tree::open_dir(l))
                    .collect::<io::Result<Vec<_>>>()
                    .map_err(Self::io(key))?;
                // Looked up below each layer's descriptor: the layer directory's own path
                // would push a deep change past what one call can name.
                let exists = |rel: &Path| {
                    lowers.iter().any(|l| rustix::fs::statat(l, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok())
                };
                layer::overlay_changes(&self.dir(key).join("upper"), &exists, skip).map_err(Self::io(key))
            }
            Driver::Copy => {
                let base = top.map(|t| self.layers.dir(t)).unwrap_or_else(|| self.layers.empty_dir());
                layer::pack::naive_changes(&base, &self.rootfs(key), skip).map_err(Self::io(key))
            }
        }
    }

    /// The overlay upper directory holding the snapshot's changes (none with the copying
    /// driver). Only to be handed to `NewLayer::Upper` once unmounted.
    pub fn upper_dir(&self, key: &str) -> Option<PathBuf> {
        (self.layers.driver() == Driver::Overlay).then(|| self.dir(key).join("upper"))
    }

    /// Bytes the container wrote (Docker's SizeRw).
    pub fn size_rw(&self, key: &str) -> u64 {
        match self.layers.driver() {
            Driver::Overlay => fsutil::tree_size(&self.dir(key).join("upper")),
            Driver::Copy => fsutil::tree_size(&self.rootfs(key)),
        }
    }
}
