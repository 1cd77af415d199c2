//! Writing trees as tar streams: whole trees (export, `cp`), and overlay upper directories as
//! layer diffs (whiteout devices and opaque xattrs become `.wh.` entries).
//!
//! Output is deterministic for a given tree (entries sorted by name, no atime/ctime, no user
//! names), so packing the same tree twice gives the same diff ID.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use skiff_common::tree::{self, Event, Stat, Walker};

use super::{OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// The longest path an archive or a change list carries: what one system call can name
/// (`PATH_MAX` less its terminating NUL). A deeper entry cannot be used by path inside a
/// container either, and no common tar tool could extract it; walks go deeper (they use
/// descriptors), but an entry past this fails the archive with a clear error.
pub const MAX_ARCHIVE_PATH: usize = 4095;

fn check_len(name: &Path) -> io::Result<()> {
    let n = name.as_os_str().len();
    if n > MAX_ARCHIVE_PATH {
        let shown: String = name.to_string_lossy().chars().take(64).collect();
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "path {shown}... is {n} bytes long: paths over {MAX_ARCHIVE_PATH} bytes (PATH_MAX) cannot be archived"
            ),
        ));
    }
    Ok(())
}

/// A path that names `name` inside the directory `dir` for the calls that only take paths
/// (extended attributes of any file type), short whatever the depth.
fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

/// Whether an entry's name is written as it is rather than through the tar crate.
fn raw_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"/") || b.starts_with(b"./")
}

/// A tar writer that knows about hard links, xattrs and special files.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Complete);
        TarWriter { builder, links: HashMap::new() }
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// Appends an entry. Relative names go through the tar crate (whose bytes layer digests
    /// depend on); a name with a leading `/` or `./` (`docker cp ctr:/ -` names its entries
    /// `/foo`, `docker cp ctr:/dir/. -` names them `./foo`, as dockerd does; the tar crate
    /// would drop the `.`) is written by hand, with a GNU long-name entry when it needs one.
    fn put(&mut self, h: &mut tar::Header, name: &OsStr, data: impl io::Read) -> io::Result<()> {
        if !raw_name(name) {
            return self.builder.append_data(h, name, data);
        }
        self.raw_names(h, name.as_bytes(), None)?;
        self.builder.append(h, data)
    }

    fn put_link(&mut self, h: &mut tar::Header, name: &OsStr, target: &OsStr) -> io::Result<()> {
        if !raw_name(name) {
            return self.builder.append_link(h, name, target);
        }
        self.raw_names(h, name.as_bytes(), Some(target.as_bytes()))?;
        self.builder.append(h, io::empty())
    }

    /// Puts names into a header as they are, preceded by GNU `L`/`K` entries for long ones.
    fn raw_names(&mut self, h: &mut tar::Header, name: &[u8], link: Option<&[u8]>) -> io::Result<()> {
        let mut long = |kind: tar::EntryType, value: &[u8]| -> io::Result<()> {
            let mut l = tar::Header::new_gnu();
            l.as_gnu_mut().expect("a GNU header").name[..13].copy_from_slice(b"././@LongLink");
            l.set_entry_type(kind);
            l.set_mode(0o644);
            l.set_size(value.len() as u64 + 1);
            l.set_cksum();
            let mut v = value.to_vec();
            v.push(0);
            self.builder.append(&l, &v[..])
        };
        if name.len() > 100 {
            long(tar::EntryType::GNULongName, name)?;
        }
        if let Some(t) = link
            && t.len() > 100
        {
            long(tar::EntryType::GNULongLink, t)?;
        }
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name = [0; 100];
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(t) = link {
            let k = t.len().min(100);
            old.linkname = [0; 100];
            old.linkname[..k].copy_from_slice(&t[..k]);
        }
        h.set_cksum();
        Ok(())
    }

    fn header_for(st: &Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(st.perm());
        h.set_uid(st.uid as u64);
        h.set_gid(st.gid as u64);
        h.set_mtime(st.mtime.0.max(0) as u64);
        h.set_size(0);
        h
    }

    fn pax(&mut self, name: &Path, xattr_path: &Path) -> io::Result<()> {
        // Only security.capability and user.* are carried, as on unpack.
        let mut records = Vec::new();
        let Ok(list) = xattr_list(xattr_path) else {
            return Ok(());
        };
        for key in list {
            if !(key.starts_with(b"user.") || key == b"security.capability") {
                continue;
            }
            if let Ok(v) = xattr_get(xattr_path, &key) {
                let mut rec = Vec::new();
                rec.extend_from_slice(b"SCHILY.xattr.");
                rec.extend_from_slice(&key);
                rec.push(b'=');
                rec.extend_from_slice(&v);
                rec.push(b'\n');
                // "<len> <rec>" where len counts itself.
                let mut len = rec.len() + 2;
                while format!("{len} ").len() + rec.len() != len {
                    len = format!("{len} ").len() + rec.len();
                }
                records.extend_from_slice(format!("{len} ").as_bytes());
                records.extend_from_slice(&rec);
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        let pax_name = Path::new("PaxHeaders.0").join(name.file_name().unwrap_or(OsStr::new("x")));
        self.put(&mut h, pax_name.as_os_str(), &records[..])
    }

    /// Appends `name` of the directory `dir` under the archive name `arch`.
    pub fn append_at(&mut self, dir: BorrowedFd<'_>, name: &OsStr, arch: &Path, st: &Stat) -> io::Result<()> {
        check_len(arch)?;
        let xattrs = proc_path(dir, name);
        match st.file_type() {
            FileType::Directory => {
                self.pax(arch, &xattrs)?;
                self.append_dir_header(arch, st)
            }
            FileType::RegularFile => {
                if let Some(()) = self.append_if_linked(arch, st)? {
                    return Ok(());
                }
                self.pax(arch, &xattrs)?;
                let fd =
                    rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                self.append_file(arch, st, File::from(fd))
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                let mut h = Self::header_for(st, tar::EntryType::Symlink);
                self.put_link(&mut h, arch.as_os_str(), OsStr::from_bytes(target.as_bytes()))
            }
            _ => self.append_special(arch, st),
        }
    }

    fn append_dir_header(&mut self, arch: &Path, st: &Stat) -> io::Result<()> {
        let mut h = Self::header_for(st, tar::EntryType::Directory);
        let mut n = arch.as_os_str().as_bytes().to_vec();
        if !n.ends_with(b"/") {
            n.push(b'/');
        }
        self.put(&mut h, OsStr::from_bytes(&n), io::empty())
    }

    /// A hard link to a file archived before, if this inode was.
    fn append_if_linked(&mut self, arch: &Path, st: &Stat) -> io::Result<Option<()>> {
        if st.nlink <= 1 {
            return Ok(None);
        }
        let key = (st.dev, st.ino);
        if let Some(first) = self.links.get(&key) {
            let mut h = Self::header_for(st, tar::EntryType::Link);
            self.put_link(&mut h, arch.as_os_str(), first.clone().as_os_str())?;
            return Ok(Some(()));
        }
        self.links.insert(key, arch.to_path_buf());
        Ok(None)
    }

    fn append_file(&mut self, arch: &Path, st: &Stat, f: File) -> io::Result<()> {
        let mut h = Self::header_for(st, tar::EntryType::Regular);
        h.set_size(st.size);
        // A file that shrinks while read would corrupt the stream: read exactly len bytes.
        let mut r = io::Read::take(f, st.size);
        if st.size <= 1 << 20 {
            let mut buf = Vec::new();
            io::Read::read_to_end(&mut r, &mut buf)?;
            buf.resize(st.size as usize, 0);
            return self.put(&mut h, arch.as_os_str(), &buf[..]);
        }
        self.put(&mut h, arch.as_os_str(), PadReader { inner: r, left: st.size })
    }

    fn append_special(&mut self, arch: &Path, st: &Stat) -> io::Result<()> {
        let kind = match st.file_type() {
            FileType::CharacterDevice => tar::EntryType::Char,
            FileType::BlockDevice => tar::EntryType::Block,
            FileType::Fifo => tar::EntryType::Fifo,
            _ => return Ok(()), // sockets are not archived
        };
        let mut h = Self::header_for(st, kind);
        h.set_device_major(rustix::fs::major(st.rdev))?;
        h.set_device_minor(rustix::fs::minor(st.rdev))?;
        self.put(&mut h, arch.as_os_str(), io::empty())
    }

    /// An empty regular file, for whiteouts.
    fn append_marker(&mut self, name: &Path, mtime: u64) -> io::Result<()> {
        check_len(name)?;
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(mtime);
        self.put(&mut h, name.as_os_str(), io::empty())
    }

    /// Appends a whole tree; `prefix` is the archive name of `root` itself (empty: entries at
    /// top level, and no entry for the root).
    pub fn append_tree(&mut self, root: &Path, prefix: &Path) -> io::Result<()> {
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        self.append_fd_tree(&fd, prefix)
    }

    /// Walks the tree below the directory `dir`, appending what `classify` lets through; entry
    /// names are `prefix` joined with their path below `dir`.
    fn walk(
        &mut self,
        dir: OwnedFd,
        prefix: &Path,
        classify: &mut dyn FnMut(BorrowedFd<'_>, &OsStr, &Path, &Stat) -> Visit,
    ) -> io::Result<()> {
        let mut w = Walker::new(dir)?;
        while let Some(ev) = w.next()? {
            let Event::Entry(e) = ev else { continue };
            let rel = w.path_of(&e.name);
            let name = if prefix.as_os_str().is_empty() { rel } else { prefix.join(rel) };
            match classify(w.dir(), &e.name, &name, &e.stat) {
                Visit::Skip => continue,
                Visit::Whiteout => {
                    let mut wh = OsString::from(WHITEOUT_PREFIX);
                    wh.push(&e.name);
                    self.append_marker(&name.with_file_name(wh), e.stat.mtime.0.max(0) as u64)?;
                    continue;
                }
                Visit::OpaqueDir => {
                    self.append_at(w.dir(), &e.name, &name, &e.stat)?;
                    self.append_marker(&name.join(WHITEOUT_OPAQUE), e.stat.mtime.0.max(0) as u64)?;
                }
                Visit::Normal => {
                    // Stay on one filesystem, as `docker cp` and export do for mounts below.
                    if e.stat.is_dir() && !w.same_fs_dir(&e) {
                        continue;
                    }
                    self.append_at(w.dir(), &e.name, &name, &e.stat)?
                }
            }
            if w.same_fs_dir(&e) {
                w.descend()?;
            }
        }
        Ok(())
    }
}

enum Visit {
    Normal,
    Skip,
    Whiteout,
    OpaqueDir,
}

/// Pads a reader with zeros up to the promised length (the file shrank while archived).
struct PadReader<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for PadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        let n = if n == 0 {
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes an overlayfs upper directory as a layer: whiteout devices become `.wh.NAME`,
/// opaque directories get `.wh..wh..opq`. `skip` names top-level paths not to include
/// (mount points the runtime created, such as `/etc/hosts`).
pub fn pack_overlay_diff<W: Write>(upper: &Path, w: W, skip: &[&str]) -> io::Result<W> {
    let mut tw = TarWriter::new(w);
    let mut classify = |dir: BorrowedFd<'_>, name: &OsStr, arch: &Path, st: &Stat| {
        if skip.iter().any(|s| arch == Path::new(s)) {
            return Visit::Skip;
        }
        if st.file_type() == FileType::CharacterDevice && st.rdev == 0 {
            return Visit::Whiteout;
        }
        if st.is_dir() && is_opaque(dir, name) {
            return Visit::OpaqueDir;
        }
        Visit::Normal
    };
    tw.walk(tree::open_dir(upper)?, Path::new(""), &mut classify)?;
    tw.finish()
}

fn is_opaque(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    xattr_get(&proc_path(dir, name), OVERLAY_OPAQUE_XATTR.as_bytes()).map(|v| v == b"y").unwrap_or(false)
}

/// A change between a container's tree and its image, as `docker diff` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    /// 0 modified, 1 added, 2 deleted (the Engine API's `Kind`).
    pub kind: u8,
}

/// Changes recorded in an overlay upper dir; `exists_below` tells whether a path (relative,
/// no leading `/`) exists in the image, to tell added from modified.
pub fn overlay_changes(upper: &Path, exists_below: &dyn Fn(&Path) -> bool, skip: &[&str]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut w = Walker::open(upper)?;
    while let Some(ev) = w.next()? {
        let Event::Entry(e) = ev else { continue };
        let rel = w.path_of(&e.name);
        if skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        check_len(&rel)?;
        let path = Path::new("/").join(&rel);
        if e.stat.file_type() == FileType::CharacterDevice && e.stat.rdev == 0 {
            out.push(Change { path, kind: 2 });
            continue;
        }
        let kind = if exists_below(&rel) { 0 } else { 1 };
        out.push(Change { path, kind });
        if w.same_fs_dir(&e) {
            w.descend()?;
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    drop_runtime_parents(&mut out, skip);
    Ok(out)
}

/// Drops the directories that are listed only because a skipped runtime path (a mount point
/// such as `etc/hosts`) was made inside them: dockerd keeps those in a layer below the
/// container's, so `docker diff` never shows `C /etc` for them.
fn drop_runtime_parents(out: &mut Vec<Change>, skip: &[&str]) {
    let parents: Vec<PathBuf> = skip
        .iter()
        .flat_map(|s| Path::new("/").join(s).ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>())
        .filter(|p| p != Path::new("/"))
        .collect();
    let listed: Vec<PathBuf> = out.iter().map(|c| c.path.clone()).collect();
    out.retain(|c| {
        !(c.kind == 0 && parents.contains(&c.path) && !listed.iter().any(|p| p != &c.path && p.starts_with(&c.path)))
    });
}

fn xattr_list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    let n = match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::RANGE) => {
            let need = rustix::fs::llistxattr_query(path)?;
            buf.resize(need, 0);
            rustix::fs::llistxattr(path, &mut buf[..])?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| s.to_vec()).collect())
}

fn xattr_get(path: &Path, key: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = match rustix::fs::lgetxattr(path, OsStr::from_bytes(key), &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::RANGE) => {
            let need = rustix::fs::lgetxattr_query(path, OsStr::from_bytes(key))?;
            buf.resize(need, 0);
            rustix::fs::lgetxattr(path, OsStr::from_bytes(key), &mut buf[..])?
        }
        Err(e) => return Err(e.into()),
    };
    buf.truncate(n);
    Ok(buf)
}

/// Whether two inodes differ in a way a layer must record (the copying driver's diff); the
/// symlink targets are read only when both are symlinks.
fn differs(
    a: &Stat,
    b: &Stat,
    link_a: impl FnOnce() -> Option<Vec<u8>>,
    link_b: impl FnOnce() -> Option<Vec<u8>>,
) -> bool {
    if a.file_type() != b.file_type() || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.rdev != b.rdev {
        return true;
    }
    if a.is_dir() {
        return false;
    }
    if a.is_symlink() {
        return link_a() != link_b();
    }
    a.size != b.size || a.mtime != b.mtime
}

fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> Option<Vec<u8>> {
    rustix::fs::readlinkat(dir, name, Vec::new()).ok().map(|t| t.into_bytes())
}

/// Changes between two full trees, sorted by path; unchanged directories that hold changes
/// are reported as modified (as Docker does).
///
/// The walk goes through `new` and keeps a descriptor of the same directory in `base` beside
/// it (climbing back with `..`, checked like the walker's own climb); below a directory that
/// `base` lacks, everything is added.
pub fn naive_changes(base: &Path, new: &Path, skip: &[&str]) -> io::Result<Vec<Change>> {
    /// What the walk knows of the directory at each level of `new`.
    enum Level {
        /// Added: absent from `base`. Holds the base directory of the level above, if there
        /// was one (there is at most one such descriptor on the stack).
        Added(Option<OwnedFd>),
        /// Present in both; whether the directory itself differs, whether anything below did,
        /// and the identity of the base directory above (to check the climb back).
        Compared { this: bool, below: bool, up: (u64, u64) },
    }
    let mut out = Vec::new();
    let mut w = Walker::open(new)?;
    let base_root = tree::open_dir(base)?;
    let mut levels = vec![Level::Compared { this: false, below: false, up: (0, 0) }];
    let mut b: Option<OwnedFd> = Some(base_root);
    deleted_in(b.as_ref().map(|f| f.as_fd()), w.dir(), Path::new(""), skip, &mut out, &mut levels, |l, changed| {
        if let Level::Compared { below, .. } = l {
            *below |= changed;
        }
    })?;
    let mark = |levels: &mut Vec<Level>| {
        if let Some(Level::Compared { below, .. }) = levels.last_mut() {
            *below = true;
        }
    };
    while let Some(ev) = w.next()? {
        match ev {
            Event::Entry(e) => {
                let rel = w.path_of(&e.name);
                if skip.iter().any(|s| rel == Path::new(s)) {
                    continue;
                }
                check_len(&rel)?;
                let path = Path::new("/").join(&rel);
                let bst = b.as_ref().and_then(|d| tree::stat_at(d, &e.name).ok());
                let descend = e.stat.is_dir() && w.same_fs_dir(&e);
                match bst {
                    None => {
                        out.push(Change { path, kind: 1 });
                        mark(&mut levels);
                        if descend {
                            let above = b.take();
                            w.descend()?;
                            levels.push(Level::Added(above));
                        }
                    }
                    Some(bs) => {
                        let dir = w.dir();
                        let this = differs(
                            &e.stat,
                            &bs,
                            || read_link_at(dir, &e.name),
                            || read_link_at(b.as_ref().expect("a base dir").as_fd(), &e.name),
                        );
                        if descend && bs.is_dir() {
                            let bd = b.as_ref().expect("a base dir");
                            let up = tree::stat_at(bd, OsStr::new("")).map(|s| (s.dev, s.ino))?;
                            let sub = tree::open_dir_at(bd, &e.name)?;
                            w.descend()?;
                            b = Some(sub);
                            levels.push(Level::Compared { this, below: false, up });
                            deleted_in(
                                b.as_ref().map(|f| f.as_fd()),
                                w.dir(),
                                w.path(),
                                skip,
                                &mut out,
                                &mut levels,
                                |l, changed| {
                                    if let Level::Compared { below, .. } = l {
                                        *below |= changed;
                                    }
                                },
                            )?;
                        } else if this {
                            out.push(Change { path, kind: 0 });
                            mark(&mut levels);
                            if descend {
                                // A directory where base has something else: all below is new.
                                let above = b.take();
                                w.descend()?;
                                levels.push(Level::Added(above));
                            }
                        }
                    }
                }
            }
            Event::Leave(e) => match levels.pop().expect("a level per directory entered") {
                Level::Added(above) => b = above,
                Level::Compared { this, below, up } => {
                    let bd = b.take().expect("a compared level has a base dir");
                    let parent = tree::open_dir_at(&bd, OsStr::new(".."))?;
                    let st = tree::stat_at(&parent, OsStr::new(""))?;
                    if (st.dev, st.ino) != up {
                        return Err(io::Error::other("the base tree changed during the comparison"));
                    }
                    b = Some(parent);
                    if this || below {
                        out.push(Change { path: Path::new("/").join(w.path_of(&e.name)), kind: 0 });
                        mark(&mut levels);
                    }
                }
            },
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    drop_runtime_parents(&mut out, skip);
    Ok(out)
}

/// Records as deleted what the base directory `base` holds and `new` does not.
fn deleted_in<L>(
    base: Option<BorrowedFd<'_>>,
    new: BorrowedFd<'_>,
    rel: &Path,
    skip: &[&str],
    out: &mut Vec<Change>,
    levels: &mut [L],
    mark: impl Fn(&mut L, bool),
) -> io::Result<()> {
    let Some(base) = base else { return Ok(()) };
    let mut any = false;
    for n in tree::read_names(base)? {
        let r = if rel.as_os_str().is_empty() { PathBuf::from(&n) } else { rel.join(&n) };
        if skip.iter().any(|s| r == Path::new(s)) {
            continue;
        }
        if matches!(tree::stat_at(new, &n), Err(rustix::io::Errno::NOENT)) {
            check_len(&r)?;
            out.push(Change { path: Path::new("/").join(r), kind: 2 });
            any = true;
        }
    }
    if let Some(l) = levels.last_mut() {
        mark(l, any);
    }
    Ok(())
}

/// Writes the difference between two full trees as a layer (the copying driver's commit).
pub fn pack_naive_diff<W: Write>(base: &Path, new: &Path, w: W, skip: &[&str]) -> io::Result<W> {
    let changes = naive_changes(base, new, skip)?;
    let root = tree::open_dir(new)?;
    let mut tw = TarWriter::new(w);
    for c in changes {
        let rel = c.path.strip_prefix("/").unwrap_or(&c.path).to_path_buf();
        let name = rel.file_name().unwrap_or_default().to_os_string();
        if c.kind == 2 {
            let mut wh = OsString::from(WHITEOUT_PREFIX);
            wh.push(&name);
            tw.append_marker(&rel.with_file_name(wh), 0)?;
        } else {
            // Every change path fits in one call (`check_len`), and nothing in it is a symlink
            // that could lead elsewhere: the walk only descended into real directories.
            let parent = rel.parent().unwrap_or(Path::new(""));
            let dir = if parent.as_os_str().is_empty() { root.try_clone()? } else { open_beneath(&root, parent)? };
            let st = tree::stat_at(&dir, &name)?;
            tw.append_at(dir.as_fd(), &name, &rel, &st)?;
        }
    }
    tw.finish()
}

/// Opens a directory below `root` by a relative path with no symlinks on the way.
fn open_beneath(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
    )?)
}

impl<W: Write> TarWriter<W> {
    /// Appends the object `fd` refers to (opened `O_PATH | O_NOFOLLOW`) and, for a directory,
    /// everything below it, using only descriptor-relative calls: nothing in the tree can
    /// redirect the walk elsewhere, even while it changes (`docker cp` from a running
    /// container), and no depth is too deep to walk.
    pub fn append_fd_tree(&mut self, fd: &OwnedFd, name: &Path) -> io::Result<()> {
        let st = tree::stat_at(fd, OsStr::new(""))?;
        match st.file_type() {
            FileType::Directory => {
                if !name.as_os_str().is_empty() {
                    check_len(name)?;
                    self.append_dir_header(name, &st)?;
                }
                let dir = tree::open_dir_at(fd, OsStr::new("."))?;
                self.walk(dir, name, &mut |_, _, _, _| Visit::Normal)
            }
            FileType::RegularFile => {
                check_len(name)?;
                if let Some(()) = self.append_if_linked(name, &st)? {
                    return Ok(());
                }
                // Reopen the O_PATH descriptor for reading: same inode, no path lookup.
                let f = File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
                self.append_file(name, &st, f)
            }
            FileType::Symlink => {
                check_len(name)?;
                let target = rustix::fs::readlinkat(fd, "", Vec::new())?;
                let mut h = Self::header_for(&st, tar::EntryType::Symlink);
                self.put_link(&mut h, name.as_os_str(), OsStr::from_bytes(target.as_bytes()))
            }
            _ => {
                check_len(name)?;
                self.append_special(name, &st)
            }
        }
    }
}
