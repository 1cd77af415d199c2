//! Writing trees as tar streams: whole trees (export, `cp`), and overlay upper directories as
//! layer diffs (whiteout devices and opaque xattrs become `.wh.` entries).
//!
//! Output is deterministic for a given tree (entries sorted by name, no atime/ctime, no user
//! names), so packing the same tree twice gives the same diff ID.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

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

    fn header_for(meta: &Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    fn pax(&mut self, name: &Path, path: &Path) -> io::Result<()> {
        // Only security.capability and user.* are carried, as on unpack.
        let mut records = Vec::new();
        let Ok(list) = xattr_list(path) else {
            return Ok(());
        };
        for key in list {
            if !(key.starts_with(b"user.") || key == b"security.capability") {
                continue;
            }
            if let Ok(v) = xattr_get(path, &key) {
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
        self.builder.append_data(&mut h, pax_name, &records[..])
    }

    /// Appends one filesystem object under the archive name `name`.
    pub fn append(&mut self, name: &Path, path: &Path, meta: &Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_dir() {
            self.pax(name, path)?;
            let mut h = Self::header_for(meta, tar::EntryType::Directory);
            let mut n = name.as_os_str().as_bytes().to_vec();
            n.push(b'/');
            return self.builder.append_data(&mut h, OsStr::from_bytes(&n), io::empty());
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    let mut h = Self::header_for(meta, tar::EntryType::Link);
                    return self.builder.append_link(&mut h, name, first.clone());
                }
                self.links.insert(key, name.to_path_buf());
            }
            self.pax(name, path)?;
            let mut h = Self::header_for(meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(path)?;
            // A file that shrinks while read would corrupt the stream: read exactly len bytes.
            let mut r = io::Read::take(f, meta.len());
            let mut buf = Vec::new();
            if meta.len() <= 1 << 20 {
                io::Read::read_to_end(&mut r, &mut buf)?;
                buf.resize(meta.len() as usize, 0);
                return self.builder.append_data(&mut h, name, &buf[..]);
            }
            return self.builder.append_data(&mut h, name, PadReader { inner: r, left: meta.len() });
        }
        if ft.is_symlink() {
            let target = fs::read_link(path)?;
            let mut h = Self::header_for(meta, tar::EntryType::Symlink);
            return self.builder.append_link(&mut h, name, target);
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            return Ok(()); // sockets are not archived
        };
        let mut h = Self::header_for(meta, kind);
        let rdev = meta.rdev();
        h.set_device_major(rustix::fs::major(rdev))?;
        h.set_device_minor(rustix::fs::minor(rdev))?;
        self.builder.append_data(&mut h, name, io::empty())
    }

    /// An empty regular file, for whiteouts.
    fn append_marker(&mut self, name: &Path, mtime: u64) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(mtime);
        self.builder.append_data(&mut h, name, io::empty())
    }

    /// Appends a whole tree; `prefix` is the archive name of `root` itself (empty: entries at
    /// top level, and no entry for the root).
    pub fn append_tree(&mut self, root: &Path, prefix: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(root)?;
        if !prefix.as_os_str().is_empty() {
            self.append(prefix, root, &meta)?;
        }
        if meta.is_dir() {
            self.walk(root, prefix, meta.dev(), &mut |_, _, _| Visit::Normal)?;
        }
        Ok(())
    }

    fn walk(
        &mut self,
        dir: &Path,
        prefix: &Path,
        dev: u64,
        classify: &mut dyn FnMut(&Path, &Path, &Metadata) -> Visit,
    ) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = prefix.join(e.file_name());
            let meta = fs::symlink_metadata(&path)?;
            match classify(&path, &name, &meta) {
                Visit::Skip => continue,
                Visit::Whiteout => {
                    let wh = name.with_file_name(format!("{WHITEOUT_PREFIX}{}", e.file_name().to_string_lossy()));
                    self.append_marker(&wh, meta.mtime().max(0) as u64)?;
                    continue;
                }
                Visit::OpaqueDir => {
                    self.append(&name, &path, &meta)?;
                    self.append_marker(&name.join(WHITEOUT_OPAQUE), meta.mtime().max(0) as u64)?;
                }
                Visit::Normal => self.append(&name, &path, &meta)?,
            }
            if meta.is_dir() && meta.dev() == dev {
                self.walk(&path, &name, dev, classify)?;
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
    let dev = fs::symlink_metadata(upper)?.dev();
    let mut classify = |path: &Path, name: &Path, meta: &Metadata| {
        if skip.iter().any(|s| name == Path::new(s)) {
            return Visit::Skip;
        }
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            return Visit::Whiteout;
        }
        if meta.is_dir() && xattr_get(path, OVERLAY_OPAQUE_XATTR.as_bytes()).map(|v| v == b"y").unwrap_or(false) {
            return Visit::OpaqueDir;
        }
        Visit::Normal
    };
    tw.walk(upper, Path::new(""), dev, &mut classify)?;
    tw.finish()
}

/// A change between a container's tree and its image, as `docker diff` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    /// 0 modified, 1 added, 2 deleted (the Engine API's `Kind`).
    pub kind: u8,
}

/// Changes recorded in an overlay upper dir; `exists_below` tells whether a path exists in the
/// image (to tell added from modified).
pub fn overlay_changes(upper: &Path, exists_below: &dyn Fn(&Path) -> bool, skip: &[&str]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut stack = vec![(upper.to_path_buf(), PathBuf::from("/"))];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let r = rel.join(e.file_name());
            if skip.iter().any(|s| r == Path::new("/").join(s)) {
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                out.push(Change { path: r, kind: 2 });
                continue;
            }
            let kind = if exists_below(&r) { 0 } else { 1 };
            out.push(Change { path: r.clone(), kind });
            if meta.is_dir() {
                stack.push((path, r));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
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

/// Whether two inodes differ in a way a layer must record (the copying driver's diff).
fn differs(a: &Metadata, b: &Metadata, pa: &Path, pb: &Path) -> bool {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.rdev() != b.rdev()
    {
        return true;
    }
    if a.is_dir() {
        return false;
    }
    if a.file_type().is_symlink() {
        return fs::read_link(pa).ok() != fs::read_link(pb).ok();
    }
    a.len() != b.len() || a.mtime() != b.mtime() || a.mtime_nsec() != b.mtime_nsec()
}

/// Changes between two full trees, sorted by path; unchanged directories that hold changes
/// are reported as modified (as Docker does).
pub fn naive_changes(base: &Path, new: &Path, skip: &[&str]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    naive_walk(Some(base), new, Path::new("/"), skip, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn naive_walk(base: Option<&Path>, new: &Path, rel: &Path, skip: &[&str], out: &mut Vec<Change>) -> io::Result<bool> {
    let mut changed = false;
    let mut names: Vec<_> =
        fs::read_dir(new)?.collect::<Result<Vec<_>, _>>()?.into_iter().map(|e| e.file_name()).collect();
    names.sort();
    for name in &names {
        let r = rel.join(name);
        if skip.iter().any(|s| r == Path::new("/").join(s)) {
            continue;
        }
        let np = new.join(name);
        let nm = fs::symlink_metadata(&np)?;
        let bp = base.map(|b| b.join(name));
        let bm = bp.as_ref().and_then(|p| fs::symlink_metadata(p).ok());
        match bm {
            None => {
                out.push(Change { path: r.clone(), kind: 1 });
                changed = true;
                if nm.is_dir() {
                    naive_walk(None, &np, &r, skip, out)?;
                }
            }
            Some(bm) => {
                let bp = bp.expect("base path exists when its metadata does");
                let this = differs(&nm, &bm, &np, &bp);
                let below = if nm.is_dir() && bm.is_dir() { naive_walk(Some(&bp), &np, &r, skip, out)? } else { false };
                if this || below {
                    out.push(Change { path: r.clone(), kind: 0 });
                    changed = true;
                }
            }
        }
    }
    if let Some(b) = base {
        for e in fs::read_dir(b)? {
            let e = e?;
            let r = rel.join(e.file_name());
            if skip.iter().any(|s| r == Path::new("/").join(s)) {
                continue;
            }
            if !names.contains(&e.file_name()) {
                out.push(Change { path: r, kind: 2 });
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Writes the difference between two full trees as a layer (the copying driver's commit).
pub fn pack_naive_diff<W: Write>(base: &Path, new: &Path, w: W, skip: &[&str]) -> io::Result<W> {
    let changes = naive_changes(base, new, skip)?;
    let mut tw = TarWriter::new(w);
    for c in changes {
        let rel = c.path.strip_prefix("/").unwrap_or(&c.path).to_path_buf();
        if c.kind == 2 {
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            tw.append_marker(&rel.with_file_name(format!("{WHITEOUT_PREFIX}{name}")), 0)?;
        } else {
            let p = new.join(&rel);
            let m = fs::symlink_metadata(&p)?;
            tw.append(&rel, &p, &m)?;
        }
    }
    tw.finish()
}

impl<W: Write> TarWriter<W> {
    fn header_for_stat(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Appends the object `fd` refers to (opened `O_PATH | O_NOFOLLOW`) and, for a directory,
    /// everything below it, using only descriptor-relative calls: nothing in the tree can
    /// redirect the walk elsewhere, even while it changes (`docker cp` from a running
    /// container).
    pub fn append_fd_tree(&mut self, fd: &std::os::fd::OwnedFd, name: &Path) -> io::Result<()> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let st = rustix::fs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        match ft {
            FileType::Directory => {
                let mut h = Self::header_for_stat(&st, tar::EntryType::Directory);
                if !name.as_os_str().is_empty() {
                    let mut n = name.as_os_str().as_bytes().to_vec();
                    n.push(b'/');
                    self.builder.append_data(&mut h, OsStr::from_bytes(&n), io::empty())?;
                }
                let dir =
                    rustix::fs::openat(fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
                let mut names = Vec::new();
                {
                    let it = rustix::fs::Dir::read_from(&dir)?;
                    for e in it {
                        let e = e?;
                        let n = e.file_name().to_bytes();
                        if n != b"." && n != b".." {
                            names.push(OsStr::from_bytes(n).to_os_string());
                        }
                    }
                }
                names.sort();
                for n in names {
                    let child = match rustix::fs::openat(
                        &dir,
                        &n,
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(c) => c,
                        Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let cst = rustix::fs::statat(&child, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
                    // Stay on one filesystem, as `docker cp` and export do for mounts below.
                    if cst.st_dev != st.st_dev && FileType::from_raw_mode(cst.st_mode) == FileType::Directory {
                        continue;
                    }
                    self.append_fd_tree(&child, &name.join(&n))?;
                }
                Ok(())
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::header_for_stat(&st, tar::EntryType::Link);
                        return self.builder.append_link(&mut h, name, first.clone());
                    }
                    self.links.insert(key, name.to_path_buf());
                }
                // Reopen the O_PATH descriptor for reading: same inode, no path lookup.
                let f = File::open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))?;
                let mut h = Self::header_for_stat(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                self.builder.append_data(
                    &mut h,
                    name,
                    PadReader { inner: io::Read::take(f, st.st_size as u64), left: st.st_size as u64 },
                )
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(fd, "", Vec::new())?;
                let mut h = Self::header_for_stat(&st, tar::EntryType::Symlink);
                self.builder.append_link(&mut h, name, OsStr::from_bytes(target.as_bytes()))
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header_for_stat(&st, kind);
                h.set_device_major(rustix::fs::major(st.st_rdev))?;
                h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                self.builder.append_data(&mut h, name, io::empty())
            }
            _ => Ok(()),
        }
    }
}
