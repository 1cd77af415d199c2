//! Files in and out of containers: `docker cp` (both ways), `export`, `diff`, `commit`.
//!
//! Paths are resolved as the container sees them. For a running container that is its root
//! (`/proc/<pid>/root`, which shows its volumes and tmpfs mounts); for a stopped one, its
//! snapshot with volume and bind mounts mapped to their host directories. Either way the
//! resolution is confined with `openat2(RESOLVE_IN_ROOT)` and the walk uses descriptors only.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, OFlags};
use serde::Serialize;
use skiff_image::layer::{self, Change, TarWriter, UnpackOptions, WhiteoutMode};
use skiff_image::store::{NewImage, apply_changes};

use super::{Containers, MountKind, RUNTIME_FILES, rootfs};
use crate::error::{EngineError, Result};
use crate::events::Event;

/// The `X-Docker-Container-Path-Stat` object (mode in Go's `os.FileMode` bits).
#[derive(Debug, Clone, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match FileType::from_raw_mode(st_mode) {
        FileType::Directory => m |= 1 << 31,
        FileType::Symlink => m |= 1 << 27,
        FileType::Fifo => m |= 1 << 25,
        FileType::Socket => m |= 1 << 24,
        FileType::BlockDevice => m |= 1 << 26,
        FileType::CharacterDevice => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if st_mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if st_mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where a container path lives: a root directory and the path inside it.
struct Located {
    root: PathBuf,
    rel: PathBuf,
}

impl Containers {
    /// Mounts a stopped container's snapshot if needed, and maps `path`.
    fn locate(&self, id: &str, path: &str) -> Result<Located> {
        let c = self.get(id)?;
        let rec = c.record();
        let path = clean(path);
        if rec.state.status.is_live() && rec.state.pid > 0 {
            return Ok(Located { root: PathBuf::from(format!("/proc/{}/root", rec.state.pid)), rel: path });
        }
        let rootfs = self.images.snapshots().mount(&rec.id, rec.top_layer.as_ref())?;
        let mut best: Option<(usize, PathBuf, PathBuf)> = None;
        for m in &rec.mounts {
            let dest = Path::new(&m.destination);
            if let Ok(rest) = path.strip_prefix(dest) {
                let depth = dest.components().count();
                if best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
                    let host = match m.kind {
                        MountKind::Bind => PathBuf::from(&m.source),
                        MountKind::Volume => self.volumes.inspect(&m.source)?.mountpoint,
                        MountKind::Tmpfs => continue,
                    };
                    best = Some((depth, host, Path::new("/").join(rest)));
                }
            }
        }
        Ok(match best {
            Some((_, root, rel)) => Located { root, rel },
            None => Located { root: rootfs, rel: path },
        })
    }

    fn open_located(&self, id: &str, path: &str, follow_last: bool) -> Result<(OwnedFd, PathStat)> {
        let loc = self.locate(id, path)?;
        let flags = if follow_last { OFlags::PATH } else { OFlags::PATH | OFlags::NOFOLLOW };
        let fd = rootfs::open_in(&loc.root, &loc.rel, flags).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::not_found(format!("Could not find the file {path} in container {id}"))
            } else {
                EngineError::internal(format!("{path}: {e}"))
            }
        })?;
        let st = rustix::fs::statat(&fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)?;
        let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            rustix::fs::readlinkat(&fd, "", Vec::new()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            String::new()
        };
        let name = clean(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into());
        let stat = PathStat {
            name,
            size: st.st_size,
            mode: go_mode(st.st_mode),
            mtime: skiff_common::timefmt::format_unix(st.st_mtime, st.st_mtime_nsec as u32),
            link_target,
        };
        Ok((fd, stat))
    }

    /// `HEAD /containers/{id}/archive`.
    pub fn stat_path(&self, id: &str, path: &str) -> Result<PathStat> {
        Ok(self.open_located(id, path, false)?.1)
    }

    /// `GET /containers/{id}/archive`: a tar of the path, streamed into `w`.
    pub fn archive_path<W: Write>(&self, id: &str, path: &str, w: W) -> Result<PathStat> {
        // "dir/." copies the directory's contents; a trailing "/" follows a symlinked dir.
        let follow = path.ends_with('/') || path.ends_with("/.");
        let (fd, stat) = self.open_located(id, path, follow)?;
        let name = if path.ends_with("/.") { PathBuf::new() } else { PathBuf::from(&stat.name) };
        let mut tw = TarWriter::new(w);
        tw.append_fd_tree(&fd, &name)?;
        tw.finish()?;
        Ok(stat)
    }

    /// `PUT /containers/{id}/archive`: extracts a tar into the directory at `path`.
    pub fn extract_to(
        &self,
        id: &str,
        path: &str,
        r: impl Read,
        copy_uid_gid: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let (fd, stat) = self.open_located(id, path, true)?;
        if stat.mode & (1 << 31) == 0 {
            return Err(EngineError::invalid(format!("extraction point is not a directory: {path}")));
        }
        let dest = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Literal,
            same_owner: copy_uid_gid,
            owner: if copy_uid_gid { None } else { Some((0, 0)) },
            no_overwrite_dir_non_dir,
            ..Default::default()
        };
        let (_, mut tar) = layer::decompress(r)?;
        layer::unpack(&mut tar, &dest, &opts)
            .map_err(|e| EngineError::invalid(skiff_image::layer::UnpackError::to_string(&e)))?;
        // Read what follows the end-of-archive marker (tar writers pad): a client still
        // sending would otherwise see the connection close under it.
        std::io::copy(&mut tar, &mut std::io::sink())?;
        let c = self.get(id)?;
        self.publish_with(&c.record(), "extract-to-dir", &[("path", path.to_string())]);
        Ok(())
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export<W: Write>(&self, id: &str, w: W) -> Result<()> {
        let c = self.get(id)?;
        let rec = c.record();
        let rootfs = self.images.snapshots().mount(&rec.id, rec.top_layer.as_ref())?;
        let fd =
            rustix::fs::open(&rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(std::io::Error::from)?;
        let mut tw = TarWriter::new(w);
        tw.append_fd_tree(&fd, Path::new(""))?;
        tw.finish()?;
        self.publish(&rec, "export");
        Ok(())
    }

    /// `docker diff`.
    pub fn changes(&self, id: &str) -> Result<Vec<Change>> {
        let c = self.get(id)?;
        let rec = c.record();
        Ok(self.images.snapshots().changes(&rec.id, rec.top_layer.as_ref(), RUNTIME_FILES)?)
    }

    /// `docker commit`: the container's changes as a new image.
    pub async fn commit(
        self: &Arc<Self>,
        id: &str,
        reference: Option<skiff_image::Reference>,
        author: Option<String>,
        comment: Option<String>,
        changes: Vec<String>,
        pause: bool,
    ) -> Result<String> {
        let c = self.get(id)?;
        let rec = c.record();
        let paused_here = pause && rec.state.status == super::Status::Running;
        if paused_here {
            // Recorded first: a daemon killed during the commit resumes the container.
            self.update(&c, skiff_image::db::Durability::Sync, |r| r.paused_for_commit = true)?;
            if let Err(e) = self.pause(&rec.id, true).await {
                let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| r.paused_for_commit = false);
                return Err(e);
            }
        }
        let this = self.clone();
        let rec2 = rec.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<String> {
            let image = this
                .images
                .get(&rec2.image_id)
                .ok_or_else(|| EngineError::not_found(format!("No such image: {}", rec2.image_id)))?;
            let mut run = image.run_config();
            // The container's own settings become the new image's defaults.
            run.cmd = rec2.config.cmd.clone();
            run.entrypoint = rec2.config.entrypoint.clone();
            run.env = rec2.config.env.clone();
            run.working_dir = rec2.config.working_dir.clone().filter(|w| !w.is_empty());
            run.user = rec2.config.user.clone().filter(|u| !u.is_empty());
            run.labels = rec2.config.labels.clone().map(|l| l.into_iter().collect());
            run.exposed_ports =
                rec2.config.exposed_ports.clone().map(|p| p.into_keys().map(|k| (k, serde_json::json!({}))).collect());
            apply_changes(&mut run, &changes)?;
            // The diff goes through a temporary file, not memory (a layer may be gigabytes).
            let tmp = this.images.tmp_dir().join(skiff_image::fsutil::random_name("commit"));
            let _cleanup = RemoveOnDrop(tmp.clone());
            {
                let f = std::fs::File::create(&tmp)?;
                let w = std::io::BufWriter::with_capacity(256 << 10, f);
                let mut w = this.images.snapshots().diff(&rec2.id, rec2.top_layer.as_ref(), w, RUNTIME_FILES)?;
                std::io::Write::flush(&mut w)?;
            }
            let mut tar = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(&tmp)?);
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("container".to_string(), serde_json::Value::String(rec2.id.clone()));
            let img = this.images.create_image(
                NewImage {
                    parent: Some(rec2.image_id.clone()),
                    run_config: run,
                    author,
                    comment,
                    created_by: Some(format!("{} {}", rec2.path, rec2.args.join(" ")).trim().to_string()),
                    extra,
                },
                Some(skiff_image::NewLayer::Tar(&mut tar)),
            )?;
            if let Some(r) = &reference {
                this.images.tag(r, img.id())?;
            }
            Ok(img.id().to_string())
        })
        .await
        .map_err(|e| EngineError::internal(e.to_string()));
        if paused_here {
            let _ = self.pause(&rec.id, false).await;
            let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| r.paused_for_commit = false);
        }
        let id = result??;
        self.publish(&rec, "commit");
        self.events.publish(Event::new("image", "commit", &id));
        Ok(id)
    }
}

impl From<skiff_image::snapshot::SnapshotError> for EngineError {
    fn from(e: skiff_image::snapshot::SnapshotError) -> Self {
        EngineError::internal(crate::error::error_chain(&e))
    }
}

/// Removes a temporary file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
