//! Files in and out of containers: `docker cp` (both ways), `export`, `diff`.
//!
//! Paths are resolved as the container sees them. For a running container that is its root
//! (`/proc/<pid>/root`, which shows its volumes and tmpfs mounts); for a stopped one, its
//! snapshot with volume and bind mounts mapped to their host directories. Either way the
//! resolution is confined with `openat2(RESOLVE_IN_ROOT)` and the walk uses descriptors only.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, OFlags};
use serde::Serialize;
use skiff_image::layer::{self, Change, TarWriter, UnpackOptions, WhiteoutMode};

use super::{Containers, MountKind, RUNTIME_FILES, rootfs};
use crate::error::{EngineError, Result};

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

/// Whether a path names a directory's contents: its last element is `.` (`.`, `./`, `dir/.`,
/// `/./`), as dockerd's `PreserveTrailingDotOrSeparator` keeps it.
fn names_contents(path: &str) -> bool {
    let trimmed = path.trim_end_matches('/');
    trimmed == "." || trimmed.ends_with("/.")
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
        // A trailing slash asks for a directory (following a symlink to one).
        if path.ends_with('/') || names_contents(path) {
            let st = self.open_located(id, path, true)?.1;
            if st.mode & (1 << 31) == 0 {
                return Err(EngineError::invalid(format!("lstat {path}: not a directory")));
            }
        }
        Ok(self.open_located(id, path, false)?.1)
    }

    /// `GET /containers/{id}/archive`: a tar of the path, streamed into `w`.
    pub fn archive_path<W: Write>(&self, id: &str, path: &str, w: W) -> Result<PathStat> {
        // "dir/." copies the directory's contents, its entries named "./…" as dockerd names
        // them; a trailing "/" follows a symlinked dir.
        let contents = names_contents(path);
        let follow = path.ends_with('/') || contents;
        let (fd, stat) = self.open_located(id, path, follow)?;
        if follow && stat.mode & (1 << 31) == 0 {
            return Err(EngineError::invalid(format!("lstat {path}: not a directory")));
        }
        let name = if contents { PathBuf::from(".") } else { PathBuf::from(&stat.name) };
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
}

impl From<skiff_image::snapshot::SnapshotError> for EngineError {
    fn from(e: skiff_image::snapshot::SnapshotError) -> Self {
        EngineError::internal(crate::error::error_chain(&e))
    }
}
