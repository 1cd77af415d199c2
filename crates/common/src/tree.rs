//! Walking directory trees with no recursion and no long paths.
//!
//! Design: a [`Walker`] holds one open descriptor, the directory it is in, and a stack with one
//! small record per level (the directory's device and inode, and the names still to visit).
//! It descends with `openat(dir, name, O_NOFOLLOW)` and climbs back with `openat(dir, "..")`,
//! checking that the parent it reaches is the one it left (device and inode), so a tree that
//! is renamed under the walk (a running container's filesystem) makes the walk fail instead of
//! leading it elsewhere. Nothing is resolved by path, so neither the depth of a tree nor the
//! length of its paths is bounded by anything but the filesystem — and the walk holds two
//! descriptors whatever the depth (a descriptor per level would run out at a few thousand).
//!
//! Callers see a stream of [`Event`]s: every entry of a directory (sorted by name), and a
//! `Leave` when a directory they descended into is done — after the walk is back in its parent,
//! so `Leave` is where a directory can be removed or get its times set.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

/// What a walk knows of an entry (from one `statx`, not following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    /// The root of a mount (the kernel says so where it can: Linux 5.8 and later).
    pub mount_root: bool,
}

impl Stat {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
    /// Permission bits with set-id and sticky bits.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// `statx(dir, name)` without following a final symlink; an empty name means `dir` itself.
pub fn stat_at(dir: impl AsFd, name: &OsStr) -> Result<Stat, Errno> {
    let flags =
        if name.is_empty() { AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW } else { AtFlags::SYMLINK_NOFOLLOW };
    let x = rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS)?;
    Ok(Stat {
        dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
        ino: x.stx_ino,
        mode: u32::from(x.stx_mode),
        nlink: u64::from(x.stx_nlink),
        uid: x.stx_uid,
        gid: x.stx_gid,
        rdev: rustix::fs::makedev(x.stx_rdev_major, x.stx_rdev_minor),
        size: x.stx_size,
        atime: (x.stx_atime.tv_sec, x.stx_atime.tv_nsec),
        mtime: (x.stx_mtime.tv_sec, x.stx_mtime.tv_nsec),
        mount_root: x.stx_attributes_mask.contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
            && x.stx_attributes.contains(rustix::fs::StatxAttributes::MOUNT_ROOT),
    })
}

/// Opens a directory for reading (and as the base of `*at` calls), never through a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let name: &OsStr = if name.is_empty() { OsStr::new(".") } else { name };
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a directory by path (following symlinks in it, as `open(2)` does).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The names in a directory (without `.` and `..`), sorted.
pub fn read_names(dir: impl AsFd) -> Result<Vec<OsString>, Errno> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// One entry met by a walk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub stat: Stat,
}

/// What a walk reports.
#[derive(Debug)]
pub enum Event {
    /// An entry of the current directory ([`Walker::dir`]).
    Entry(Entry),
    /// A directory descended into is done; the walk is back in its parent.
    Leave(Entry),
}

struct Level {
    dev: u64,
    ino: u64,
    /// Names still to visit, last first.
    todo: Vec<OsString>,
    /// The directory's own entry (none for the root).
    entry: Option<Entry>,
    /// Length of the walker's path before this level's name was pushed.
    path_len: usize,
}

/// A depth-first walk of the tree below a directory. See the module documentation.
pub struct Walker {
    cur: OwnedFd,
    levels: Vec<Level>,
    path: Vec<u8>,
    root_dev: u64,
    /// The last entry returned, which [`Walker::descend`] may enter.
    last: Option<Entry>,
}

fn changed(what: &str) -> io::Error {
    io::Error::other(format!("the tree changed during the walk ({what})"))
}

impl Walker {
    /// Walks the tree below `root`, a directory descriptor (its entries first, sorted).
    pub fn new(root: OwnedFd) -> io::Result<Walker> {
        let st = stat_at(&root, OsStr::new(""))?;
        if !st.is_dir() {
            return Err(io::Error::from(Errno::NOTDIR));
        }
        let mut todo = read_names(&root)?;
        todo.reverse();
        Ok(Walker {
            cur: root,
            levels: vec![Level { dev: st.dev, ino: st.ino, todo, entry: None, path_len: 0 }],
            path: Vec::new(),
            root_dev: st.dev,
            last: None,
        })
    }

    /// Walks the tree below the directory at `path`.
    pub fn open(path: &Path) -> io::Result<Walker> {
        Walker::new(open_dir(path)?)
    }

    /// The directory the current entries are in.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.cur.as_fd()
    }

    /// How deep the current directory is (the root is 0).
    pub fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    /// The current directory's path relative to the root (empty for the root).
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// The path of an entry of the current directory, relative to the root.
    pub fn path_of(&self, name: &OsStr) -> PathBuf {
        let mut p = Vec::with_capacity(self.path.len() + 1 + name.len());
        p.extend_from_slice(&self.path);
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name.as_bytes());
        PathBuf::from(OsString::from_vec(p))
    }

    /// Whether an entry is a directory on the root's filesystem and not a mount point, i.e.
    /// one a walk that stays on one filesystem descends into.
    pub fn same_fs_dir(&self, e: &Entry) -> bool {
        e.stat.is_dir() && e.stat.dev == self.root_dev && !e.stat.mount_root
    }

    /// The next event, or `None` when the whole tree has been visited.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Option<Event>> {
        self.last = None;
        loop {
            let level = self.levels.last_mut().expect("the root level stays");
            if let Some(name) = level.todo.pop() {
                let stat = match stat_at(&self.cur, &name) {
                    Ok(s) => s,
                    // Removed since the directory was read.
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                let e = Entry { name, stat };
                self.last = Some(e.clone());
                return Ok(Some(Event::Entry(e)));
            }
            if self.levels.len() == 1 {
                return Ok(None);
            }
            let done = self.levels.pop().expect("more than one level");
            let parent = self.levels.last().expect("a parent level");
            let up = open_dir_at(&self.cur, OsStr::new(".."))?;
            let st = stat_at(&up, OsStr::new(""))?;
            if (st.dev, st.ino) != (parent.dev, parent.ino) {
                return Err(changed("a directory moved"));
            }
            self.cur = up;
            self.path.truncate(done.path_len);
            return Ok(Some(Event::Leave(done.entry.expect("non-root levels have an entry"))));
        }
    }

    /// Enters the directory the last [`Event::Entry`] named; its entries come next, then a
    /// `Leave` for it.
    pub fn descend(&mut self) -> io::Result<()> {
        let e = self.last.take().ok_or_else(|| io::Error::other("descend: no entry to enter"))?;
        let fd = open_dir_at(&self.cur, &e.name)?;
        let st = stat_at(&fd, OsStr::new(""))?;
        if (st.dev, st.ino) != (e.stat.dev, e.stat.ino) {
            return Err(changed("a directory was replaced"));
        }
        let mut todo = read_names(&fd)?;
        todo.reverse();
        let path_len = self.path.len();
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(e.name.as_bytes());
        self.cur = fd;
        self.levels.push(Level { dev: st.dev, ino: st.ino, todo, entry: Some(e), path_len });
        Ok(())
    }
}

/// Removes everything below the open directory `dir` (not `dir` itself), never following
/// symlinks and never descending into a mount point (that is an error: `EBUSY`).
pub fn remove_contents(dir: OwnedFd) -> io::Result<()> {
    let mut w = Walker::new(dir)?;
    while let Some(ev) = w.next()? {
        match ev {
            Event::Entry(e) if e.stat.is_dir() => {
                if !w.same_fs_dir(&e) {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!("{} is a mount point", w.path_of(&e.name).display()),
                    ));
                }
                match w.descend() {
                    Ok(()) => {}
                    // A directory we may not read (a non-root caller): open it up first.
                    Err(err) if err.raw_os_error() == Some(Errno::ACCESS.raw_os_error()) => {
                        rustix::fs::chmodat(w.dir(), &e.name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
                        w.last = Some(e);
                        w.descend()?;
                    }
                    Err(err) => return Err(err),
                }
            }
            Event::Entry(e) => unlink_at(w.dir(), &e.name, AtFlags::empty())?,
            Event::Leave(e) => unlink_at(w.dir(), &e.name, AtFlags::REMOVEDIR)?,
        }
    }
    Ok(())
}

fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, flags: AtFlags) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ACCESS) => {
            // The directory is not writable to a non-root caller.
            rustix::fs::chmodat(dir, ".", Mode::from_raw_mode(0o700), AtFlags::empty())?;
            Ok(rustix::fs::unlinkat(dir, name, flags)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir`, whatever it is, a whole tree included; a missing name is fine.
pub fn remove_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let st = match stat_at(&dir, name) {
        Ok(s) => s,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if st.is_dir() {
        remove_contents(open_dir_at(&dir, name)?)?;
        unlink_at(dir.as_fd(), name, AtFlags::REMOVEDIR)
    } else {
        unlink_at(dir.as_fd(), name, AtFlags::empty())
    }
}

/// Removes a path and everything below it; a missing path is fine.
pub fn remove_all(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (if p.as_os_str().is_empty() { Path::new(".") } else { p }, n),
        _ => return Err(io::Error::other(format!("refusing to remove {}", path.display()))),
    };
    let dir = match open_dir(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_at(&dir, name)
}

/// Apparent size in bytes of the regular files and symlinks of a tree (each hard-linked inode
/// counted once), without following symlinks or crossing mounts. Best effort: what cannot be
/// read is not counted.
pub fn tree_size(path: &Path) -> u64 {
    let Ok(mut w) = Walker::open(path) else { return 0 };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    loop {
        match w.next() {
            Ok(Some(Event::Entry(e))) => {
                if e.stat.is_dir() {
                    if w.same_fs_dir(&e) && w.descend().is_err() {
                        continue;
                    }
                } else if e.stat.dev == w.root_dev && (e.stat.nlink <= 1 || seen.insert(e.stat.ino)) {
                    total += e.stat.size;
                }
            }
            Ok(Some(Event::Leave(_))) => {}
            Ok(None) | Err(_) => return total,
        }
    }
}

/// Block size below which runs of zeros are written rather than skipped.
const HOLE: usize = 4096;

/// Copies `r` into `f` from offset 0, leaving aligned blocks of zeros as holes (as `cp
/// --sparse=always` does): a sparse or zero-filled stream takes no disk for its zeros. Returns
/// the number of bytes copied (the file's length). `f` should be new or empty.
pub fn copy_sparse(r: &mut impl Read, f: &File, buf: &mut [u8]) -> io::Result<u64> {
    copy_sparse_limited(r, f, buf, u64::MAX)
}

/// [`copy_sparse`], failing with `FileTooLarge` once more than `limit` bytes arrive.
///
/// Blocks are judged whole and at their place in the file (4 KiB, aligned to the file offset)
/// whatever sizes the reads come in: bytes of a block not yet complete wait in a small staging
/// buffer. Runs of non-zero blocks go out in one write.
pub fn copy_sparse_limited(r: &mut impl Read, f: &File, buf: &mut [u8], limit: u64) -> io::Result<u64> {
    let mut off = 0u64;
    let mut stage = [0u8; HOLE];
    let mut staged = 0usize;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if off.saturating_add(n as u64) > limit {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("more than {limit} bytes")));
        }
        let data = &buf[..n];
        let mut i = 0;
        // Complete the staged block first (it starts at an aligned offset).
        if staged > 0 {
            let take = (HOLE - staged).min(n);
            stage[staged..staged + take].copy_from_slice(&data[..take]);
            staged += take;
            i = take;
            if staged == HOLE {
                let at = off + i as u64 - HOLE as u64;
                if stage.iter().any(|b| *b != 0) {
                    f.write_all_at(&stage, at)?;
                }
                staged = 0;
            }
        }
        if staged == 0 {
            let full_end = i + (n - i) / HOLE * HOLE;
            let mut run: Option<usize> = None;
            let mut k = i;
            while k < full_end {
                let zero = data[k..k + HOLE].iter().all(|b| *b == 0);
                match (zero, run) {
                    (true, Some(start)) => {
                        f.write_all_at(&data[start..k], off + start as u64)?;
                        run = None;
                    }
                    (false, None) => run = Some(k),
                    _ => {}
                }
                k += HOLE;
            }
            if let Some(start) = run {
                f.write_all_at(&data[start..full_end], off + start as u64)?;
            }
            staged = n - full_end;
            stage[..staged].copy_from_slice(&data[full_end..]);
        }
        off += n as u64;
    }
    if staged > 0 && stage[..staged].iter().any(|b| *b != 0) {
        f.write_all_at(&stage[..staged], off - staged as u64)?;
    }
    // Trailing holes: the length says where the file ends.
    f.set_len(off)?;
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn deep(root: &Path, depth: usize) {
        // Built with relative mkdir/chdir-free calls: the path gets longer than PATH_MAX.
        let mut fd = open_dir(root).unwrap();
        for i in 0..depth {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            if i % 100 == 0 {
                let f =
                    rustix::fs::openat(&fd, "f", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644)).unwrap();
                rustix::io::write(&f, b"0123456789").unwrap();
            }
            fd = open_dir_at(&fd, OsStr::new("d")).unwrap();
        }
    }

    #[test]
    fn walks_sorted_with_leaves_after_children() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("b/c")).unwrap();
        fs::write(t.path().join("a"), b"x").unwrap();
        fs::write(t.path().join("b/c/f"), b"yy").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("b/l")).unwrap();
        let mut w = Walker::open(t.path()).unwrap();
        let mut seen = Vec::new();
        while let Some(ev) = w.next().unwrap() {
            match ev {
                Event::Entry(e) => {
                    seen.push(format!("+{}", w.path_of(&e.name).display()));
                    if e.stat.is_dir() {
                        w.descend().unwrap();
                    }
                }
                Event::Leave(e) => seen.push(format!("-{}", w.path_of(&e.name).display())),
            }
        }
        assert_eq!(seen, ["+a", "+b", "+b/c", "+b/c/f", "-b/c", "+b/l", "-b"]);
    }

    #[test]
    fn deep_trees_are_measured_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        fs::create_dir(&root).unwrap();
        deep(&root, 5000);
        assert_eq!(tree_size(&root), 50 * 10);
        remove_all(&root).unwrap();
        assert!(!root.exists());
        remove_all(&root).unwrap();
    }

    #[test]
    fn removal_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let keep = t.path().join("keep");
        fs::create_dir(&keep).unwrap();
        fs::write(keep.join("precious"), b"p").unwrap();
        let gone = t.path().join("gone");
        fs::create_dir_all(gone.join("sub")).unwrap();
        std::os::unix::fs::symlink(&keep, gone.join("sub/link")).unwrap();
        remove_all(&gone).unwrap();
        assert!(keep.join("precious").exists());
        assert!(!gone.exists());
    }

    #[test]
    fn a_walk_that_loses_its_parent_fails() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("r/a/b")).unwrap();
        fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        let mut w = Walker::open(&t.path().join("r")).unwrap();
        let Some(Event::Entry(_)) = w.next().unwrap() else { panic!() };
        w.descend().unwrap(); // in r/a
        let Some(Event::Entry(_)) = w.next().unwrap() else { panic!() };
        w.descend().unwrap(); // in r/a/b
        // a is moved away: climbing from b leads to `elsewhere`, not to r/a.
        fs::rename(t.path().join("r/a"), t.path().join("elsewhere/a")).unwrap();
        assert!(w.next().unwrap().is_some_and(|e| matches!(e, Event::Leave(_))));
        assert!(w.next().is_err(), "climbing from a moved directory is refused");
    }

    #[test]
    fn sparse_copies_keep_holes() {
        let t = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 10 << 20];
        data[5 << 20] = 7;
        data[(10 << 20) - 1] = 0;
        let f = File::create(t.path().join("s")).unwrap();
        let mut buf = vec![0u8; 128 << 10];
        let n = copy_sparse(&mut &data[..], &f, &mut buf).unwrap();
        assert_eq!(n, data.len() as u64);
        let m = fs::metadata(t.path().join("s")).unwrap();
        assert_eq!(m.len(), data.len() as u64);
        assert!(m.blocks() * 512 < 1 << 20, "zeros became holes ({} blocks)", m.blocks());
        assert_eq!(fs::read(t.path().join("s")).unwrap(), data);
        // Unaligned reads still give the same bytes.
        let g = File::create(t.path().join("u")).unwrap();
        let mut small = vec![0u8; 1000];
        copy_sparse(&mut &data[..], &g, &mut small).unwrap();
        assert_eq!(fs::read(t.path().join("u")).unwrap(), data);
        assert!(fs::metadata(t.path().join("u")).unwrap().blocks() * 512 < 1 << 20, "holes with unaligned reads");
        let h = File::create(t.path().join("l")).unwrap();
        assert_eq!(
            copy_sparse_limited(&mut &data[..], &h, &mut buf, 1 << 20).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );
    }
}
