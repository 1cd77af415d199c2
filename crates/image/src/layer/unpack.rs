//! Unpacking a layer tar into a directory, safely.
//!
//! Design: every path in the archive is resolved *inside* the target directory with
//! `openat2(RESOLVE_IN_ROOT)`, i.e. exactly as a process chrooted into the target would see it
//! (what Docker gets by unpacking inside a chroot). A symlink in the archive, absolute or
//! relative, can therefore never lead a later entry outside the target. On top of that we reject
//! what Docker rejects: entry names with `..` and hard links whose target is outside it.
//! Symlinks themselves may point anywhere, `../../..` included (real images ship such links):
//! they are only ever resolved inside a root, here and in the container. The final component of
//! each entry is always handled with `*at` calls that do not follow symlinks. Zeros in file
//! content become holes, so sparse entries stay sparse on disk.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are either turned into overlayfs whiteouts (a 0/0
//! character device, and the `trusted.overlay.opaque` xattr) when a layer gets its own
//! directory under overlayfs, or applied (the paths removed) when layers are stacked into one
//! tree by the copying snapshotter.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::{WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer archive")]
    Read(#[source] io::Error),
    #[error("invalid path in layer archive: {0:?}")]
    BadPath(PathBuf),
    #[error("a path in the layer archive is {0} bytes long (more than {max}, PATH_MAX)", max = super::pack::MAX_ARCHIVE_PATH)]
    TooLong(usize),
    #[error("path {path:?} in layer archive escapes the target: {why}")]
    Breakout { path: PathBuf, why: String },
    #[error("device node {0:?} in layer archive refused (devices are not allowed here)")]
    Device(PathBuf),
    #[error("unsupported entry type {kind:?} for {path:?}")]
    Unsupported { path: PathBuf, kind: u8 },
    #[error("hard link {path:?} -> {target:?}: target missing or not a file")]
    BadHardlink { path: PathBuf, target: PathBuf },
    #[error("the image unpacks to more than {limit} bytes (the daemon's limit on unpacked image size)")]
    TooLarge { limit: u64 },
    #[error("unpacking {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(Errno) -> UnpackError + '_ {
    move |e| UnpackError::Io { path: path.to_path_buf(), source: e.into() }
}

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Layer in its own directory, mounted as an overlayfs lower dir.
    Overlay,
    /// Layer applied onto the tree of its parents.
    Apply,
    /// Not a layer (`docker cp`): `.wh.` names are ordinary files.
    Literal,
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    Reject,
    Skip,
    Allow,
}

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutMode,
    pub devices: DevicePolicy,
    /// Device nodes under `dev/` are skipped rather than refused: the runtime mounts its own
    /// /dev over them, and rootfs tarballs (debootstrap) routinely carry them.
    pub skip_dev_dir_devices: bool,
    /// Restore owners from the archive (needs CAP_CHOWN).
    pub same_owner: bool,
    /// Give every entry this owner instead (`docker cp` without `-a`).
    pub owner: Option<(u32, u32)>,
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Bytes of file content this unpack may write at most (an image's size limit).
    pub max_bytes: Option<u64>,
    /// `..` in entry names resolves lexically against the root (`../foo` is `foo`), as
    /// extracting inside a chroot does; dockerd treats build contexts so. Otherwise `..` is
    /// refused.
    pub rooted_dotdot: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            devices: DevicePolicy::Reject,
            skip_dev_dir_devices: true,
            same_owner: true,
            owner: None,
            no_overwrite_dir_non_dir: false,
            max_bytes: None,
            rooted_dotdot: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Unpacks an uncompressed tar stream into `dest` (which must exist).
pub fn unpack<R: Read>(r: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    let root = rustix::fs::open(dest, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io_at(dest))?;
    let mut u = Unpacker {
        root,
        opts: opts.clone(),
        cache: None,
        dirs: Vec::new(),
        created: HashSet::new(),
        stats: UnpackStats::default(),
        buf: vec![0u8; 128 << 10],
    };
    let mut ar = tar::Archive::new(super::TarGuard::new(r));
    for entry in ar.entries().map_err(UnpackError::Read)? {
        let entry = entry.map_err(UnpackError::Read)?;
        u.entry(entry)?;
    }
    // Directory times last: creating children changed them.
    for (rel, ts) in std::mem::take(&mut u.dirs).into_iter().rev() {
        if let Ok(fd) = u.open_in_root(&rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            let _ = rustix::fs::utimensat(&fd, "", &ts, AtFlags::EMPTY_PATH);
        }
    }
    Ok(u.stats)
}

struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    /// Last parent directory opened, reused by its siblings.
    cache: Option<(PathBuf, OwnedFd)>,
    dirs: Vec<(PathBuf, Timestamps)>,
    /// Paths this layer created (for opaque directories in apply mode).
    created: HashSet<PathBuf>,
    stats: UnpackStats,
    buf: Vec<u8>,
}

/// Cleans an archive path to a relative path of normal components; `None` for the root itself.
pub(crate) fn clean_path(p: &Path) -> Result<Option<PathBuf>, UnpackError> {
    clean_path_with(p, false)
}

/// As [`clean_path`]; with `rooted_dotdot`, `..` pops a component (and stays at the root).
fn clean_path_with(p: &Path, rooted_dotdot: bool) -> Result<Option<PathBuf>, UnpackError> {
    if p.as_os_str().len() > super::pack::MAX_ARCHIVE_PATH {
        return Err(UnpackError::TooLong(p.as_os_str().len()));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                if n.as_bytes().contains(&0) {
                    return Err(UnpackError::BadPath(p.to_path_buf()));
                }
                out.push(n)
            }
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir if rooted_dotdot => {
                out.pop();
            }
            Component::ParentDir => {
                return Err(UnpackError::Breakout { path: p.to_path_buf(), why: "\"..\" in path".into() });
            }
            Component::Prefix(_) => return Err(UnpackError::BadPath(p.to_path_buf())),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// An entry's owner, mode, time and extended attributes, as they are to be set.
struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    xattrs: Xattrs,
}

fn ts(secs: u64) -> Timestamps {
    let t = Timespec { tv_sec: secs.min(i64::MAX as u64) as i64, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

impl Unpacker {
    /// Opens `rel` as the root-confined view sees it. Intermediate symlinks (and the last one,
    /// unless `flags` has NOFOLLOW) resolve inside the root, as in a chroot.
    fn open_in_root(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        rustix::fs::openat2(
            &self.root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Opens (creating as needed) a directory inside the root; symlinks on the way resolve
    /// inside the root.
    fn parent_dir(&mut self, rel: &Path) -> Result<OwnedFd, UnpackError> {
        if let Some((p, fd)) = &self.cache
            && p == rel
        {
            return fd.try_clone().map_err(|e| UnpackError::Io { path: rel.into(), source: e });
        }
        let fd = match self.open_in_root(rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.make_dirs(rel)?,
            Err(e) => return Err(io_at(rel)(e)),
        };
        self.cache =
            Some((rel.to_path_buf(), fd.try_clone().map_err(|e| UnpackError::Io { path: rel.into(), source: e })?));
        Ok(fd)
    }

    fn make_dirs(&mut self, rel: &Path) -> Result<OwnedFd, UnpackError> {
        let mut cur = PathBuf::new();
        let mut fd = self.open_in_root(&cur, OFlags::PATH | OFlags::DIRECTORY).map_err(io_at(rel))?;
        for c in rel.components() {
            cur.push(c);
            fd = match self.open_in_root(&cur, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(f) => f,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_at(&cur)(e)),
                    }
                    self.created.insert(cur.clone());
                    self.open_in_root(&cur, OFlags::PATH | OFlags::DIRECTORY).map_err(io_at(&cur))?
                }
                Err(e) => return Err(io_at(&cur)(e)),
            };
        }
        Ok(fd)
    }

    fn invalidate(&mut self, rel: &Path) {
        if let Some((p, _)) = &self.cache
            && p.starts_with(rel)
        {
            self.cache = None;
        }
    }

    /// Removes whatever is at `name` in `dir` (a whole tree for a directory, at any depth).
    fn remove(&mut self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), UnpackError> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_at(rel)(e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                self.invalidate(rel);
                skiff_common::tree::remove_at(dir, name)
                    .map_err(|source| UnpackError::Io { path: rel.to_path_buf(), source })?;
            }
            Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io_at(rel))?,
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let Some(rel) = clean_path_with(&raw, self.opts.rooted_dotdot)? else {
            return Ok(());
        };
        self.stats.entries += 1;
        let name = rel.file_name().expect("cleaned path has a last component").to_os_string();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name_bytes = name.as_bytes();

        let literal = self.opts.whiteouts == WhiteoutMode::Literal;
        if !literal && name_bytes == WHITEOUT_OPAQUE.as_bytes() {
            return self.opaque(&parent);
        }
        if let Some(target) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()).filter(|_| !literal) {
            if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Ok(()); // other aufs metadata (.wh..wh.plnk etc.)
            }
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                return Err(UnpackError::BadPath(raw));
            }
            return self.whiteout(&parent, OsStr::from_bytes(target));
        }

        let hdr = entry.header().clone();
        let kind = hdr.entry_type();
        let mode =
            lenient(hdr.mode().map(u64::from), &hdr.as_bytes()[100..108]).map_err(UnpackError::Read)? as u32 & 0o7777;
        let (uid, gid) = match self.opts.owner {
            Some((u, g)) => (u as u64, g as u64),
            None => (
                lenient(hdr.uid(), &hdr.as_bytes()[108..116]).map_err(UnpackError::Read)?,
                lenient(hdr.gid(), &hdr.as_bytes()[116..124]).map_err(UnpackError::Read)?,
            ),
        };
        let mtime = lenient(hdr.mtime(), &hdr.as_bytes()[136..148]).unwrap_or(0);
        let xattrs = read_xattrs(&mut entry)?;
        let meta = Meta { uid, gid, mode, mtime, xattrs };

        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            let in_dev = rel.starts_with("dev");
            match self.opts.devices {
                DevicePolicy::Allow => {}
                DevicePolicy::Skip => return Ok(()),
                DevicePolicy::Reject if in_dev && self.opts.skip_dev_dir_devices => return Ok(()),
                DevicePolicy::Reject => return Err(UnpackError::Device(rel)),
            }
        }

        let dir = self.parent_dir(&parent)?;
        self.created.insert(rel.clone());
        if self.opts.no_overwrite_dir_non_dir
            && let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)
        {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if is_dir != (kind == tar::EntryType::Directory) {
                return Err(UnpackError::Io {
                    path: rel,
                    source: io::Error::other("cannot overwrite a directory with a non-directory, or the reverse"),
                });
            }
        }
        match kind {
            tar::EntryType::Directory => self.make_dir(&dir, &name, rel, &meta)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.write_file(&mut entry, &dir, &name, &rel, &meta)?
            }
            tar::EntryType::Symlink => {
                let target =
                    entry.link_name().map_err(UnpackError::Read)?.ok_or_else(|| UnpackError::BadPath(raw.clone()))?;
                if target.as_os_str().is_empty() || target.as_os_str().as_bytes().contains(&0) {
                    return Err(UnpackError::BadPath(raw));
                }
                self.remove(&dir, &name, &rel)?;
                self.invalidate(&rel);
                rustix::fs::symlinkat(target.as_os_str(), &dir, &name).map_err(io_at(&rel))?;
                if self.opts.same_owner || self.opts.owner.is_some() {
                    rustix::fs::chownat(&dir, &name, Some(uid_of(uid)), Some(gid_of(gid)), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_at(&rel))?;
                }
                let _ = rustix::fs::utimensat(&dir, &name, &ts(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            tar::EntryType::Link => self.hard_link(&mut entry, &dir, &name, rel, &raw)?,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = hdr.device_major().ok().flatten().unwrap_or(0);
                let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
                let dev: Dev = rustix::fs::makedev(major, minor);
                self.remove(&dir, &name, &rel)?;
                rustix::fs::mknodat(&dir, &name, ft, Mode::from_raw_mode(mode), dev).map_err(io_at(&rel))?;
                if self.opts.same_owner || self.opts.owner.is_some() {
                    rustix::fs::chownat(&dir, &name, Some(uid_of(uid)), Some(gid_of(gid)), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_at(&rel))?;
                }
                rustix::fs::chmodat(&dir, &name, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(io_at(&rel))?;
                let _ = rustix::fs::utimensat(&dir, &name, &ts(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(UnpackError::Unsupported { path: rel, kind: other.as_byte() });
            }
        }
        Ok(())
    }

    /// A directory entry: made (or a non-directory in its way replaced), owner, mode and
    /// xattrs set now, its time when the whole layer is in (writes below would change it).
    fn make_dir(&mut self, dir: &OwnedFd, name: &OsStr, rel: PathBuf, m: &Meta) -> Result<(), UnpackError> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) => {
                self.remove(dir, name, &rel)?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)).map_err(io_at(&rel))?;
            }
            Err(Errno::NOENT) => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)).map_err(io_at(&rel))?,
            Err(e) => return Err(io_at(&rel)(e)),
        }
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_at(&rel))?;
        self.set_owner_mode(&fd, m.uid, m.gid, m.mode, &rel)?;
        set_xattrs_fd(&fd, &m.xattrs, &rel);
        self.dirs.push((rel, ts(m.mtime)));
        Ok(())
    }

    /// A regular file: written (zeros as holes) within the size budget, then owner, mode,
    /// xattrs and time.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        m: &Meta,
    ) -> Result<(), UnpackError> {
        self.remove(dir, name, rel)?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_at(rel))?;
        let file = std::fs::File::from(fd);
        let budget = self.opts.max_bytes.map_or(u64::MAX, |m| m.saturating_sub(self.stats.bytes));
        // Zeros become holes: a sparse entry (or a stream of zeros) takes no disk for them.
        let n = skiff_common::tree::copy_sparse_limited(entry, &file, &mut self.buf, budget).map_err(|e| {
            match (e.kind(), self.opts.max_bytes) {
                (io::ErrorKind::FileTooLarge, Some(limit)) => UnpackError::TooLarge { limit },
                _ => UnpackError::Io { path: rel.to_path_buf(), source: e },
            }
        })?;
        self.stats.bytes += n;
        let fd = OwnedFd::from(file);
        self.set_owner_mode(&fd, m.uid, m.gid, m.mode, rel)?;
        set_xattrs_fd(&fd, &m.xattrs, rel);
        rustix::fs::futimens(&fd, &ts(m.mtime)).map_err(io_at(rel))?;
        Ok(())
    }

    /// A hard link: its target must be a non-directory already unpacked in this root.
    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &OwnedFd,
        name: &OsStr,
        rel: PathBuf,
        raw: &Path,
    ) -> Result<(), UnpackError> {
        let target =
            entry.link_name().map_err(UnpackError::Read)?.ok_or_else(|| UnpackError::BadPath(raw.to_path_buf()))?;
        let Some(trel) = clean_path_with(&target, self.opts.rooted_dotdot)? else {
            return Err(UnpackError::BadHardlink { path: rel, target: target.into_owned() });
        };
        if trel == rel {
            return Ok(());
        }
        let tname = trel.file_name().expect("cleaned").to_os_string();
        let tdir = self
            .open_in_root(trel.parent().unwrap_or(Path::new("")), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|_| UnpackError::BadHardlink { path: rel.clone(), target: trel.clone() })?;
        match rustix::fs::statat(&tdir, &tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {}
            _ => {
                return Err(UnpackError::BadHardlink { path: rel, target: trel });
            }
        }
        self.remove(dir, name, &rel)?;
        rustix::fs::linkat(&tdir, &tname, dir, name, AtFlags::empty()).map_err(io_at(&rel))?;
        Ok(())
    }

    fn set_owner_mode(&self, fd: &OwnedFd, uid: u64, gid: u64, mode: u32, rel: &Path) -> Result<(), UnpackError> {
        // chown before chmod: chown clears set-id bits.
        if self.opts.same_owner || self.opts.owner.is_some() {
            rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(io_at(rel))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(io_at(rel))
    }

    fn whiteout(&mut self, parent: &Path, target: &OsStr) -> Result<(), UnpackError> {
        let rel = parent.join(target);
        let dir = self.parent_dir(parent)?;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                self.remove(&dir, target, &rel)?;
                rustix::fs::mknodat(&dir, target, FileType::CharacterDevice, Mode::empty(), rustix::fs::makedev(0, 0))
                    .map_err(io_at(&rel))?;
            }
            WhiteoutMode::Apply => self.remove(&dir, target, &rel)?,
            WhiteoutMode::Literal => unreachable!("literal mode has no whiteouts"),
        }
        Ok(())
    }

    fn opaque(&mut self, parent: &Path) -> Result<(), UnpackError> {
        let dir = self.parent_dir(parent)?;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let fd =
                    rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(io_at(parent))?;
                rustix::fs::fsetxattr(&fd, super::OVERLAY_OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                    .map_err(io_at(parent))?;
            }
            WhiteoutMode::Literal => unreachable!("literal mode has no whiteouts"),
            WhiteoutMode::Apply => {
                let fd =
                    rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(io_at(parent))?;
                let mut names = Vec::new();
                let it = rustix::fs::Dir::read_from(&fd).map_err(io_at(parent))?;
                for e in it {
                    let e = e.map_err(io_at(parent))?;
                    let n = e.file_name().to_bytes();
                    if n == b"." || n == b".." {
                        continue;
                    }
                    let name = OsStr::from_bytes(n).to_os_string();
                    if !self.created.contains(&parent.join(&name)) {
                        names.push(name);
                    }
                }
                for n in names {
                    let rel = parent.join(&n);
                    self.remove(&dir, &n, &rel)?;
                }
            }
        }
        Ok(())
    }
}

/// A numeric header field that is entirely NUL or blank reads as 0 (as Go's archive/tar does);
/// anything else that does not parse is an error.
fn lenient(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

fn uid_of(u: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u.min(u32::MAX as u64 - 1) as u32)
}
fn gid_of(g: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g.min(u32::MAX as u64 - 1) as u32)
}

/// Extended attributes as (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn read_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Xattrs, UnpackError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in exts {
            let ext = ext.map_err(UnpackError::Read)?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                // Only attributes a container image may legitimately carry.
                if name.starts_with(b"user.") || name == b"security.capability" {
                    out.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

fn set_xattrs_fd(fd: &OwnedFd, xattrs: &[(Vec<u8>, Vec<u8>)], rel: &Path) {
    for (k, v) in xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, OsStr::from_bytes(k), v, rustix::fs::XattrFlags::empty()) {
            tracing::debug!(path = ?rel, attr = %String::from_utf8_lossy(k), %e, "xattr not restored");
        }
    }
}
