//! Small filesystem helpers shared by the stores: atomic writes, directory sync, sizes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A unique file name with a prefix, for temp files and directories.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a file atomically: temp file in the same directory, fsync, rename, fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
    let tmp = dir.join(format!(".{}", random_name("tmp")));
    let result = (|| {
        let mut f = File::options().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replaces a file atomically (temp file + rename) without forcing it to disk: for runtime
/// state under the exec root, which must survive the daemon being killed (the page cache
/// does) but not a reboot (nothing it describes does either).
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
    let tmp = dir.join(format!(".{}", random_name("tmp")));
    let result = fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a directory tree; a missing path is not an error. Clears immutable-looking
/// permission bits first where removal fails with EACCES (read-only dirs inside layers).
pub fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return fs::remove_file(path),
        Ok(_) => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Disk usage of a tree in bytes (apparent sizes of regular files and symlinks, each
/// hard-linked inode counted once), without following symlinks or crossing mounts.
pub fn tree_size(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let dev = match fs::symlink_metadata(path) {
        Ok(m) => m.dev(),
        Err(_) => return 0,
    };
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = fs::read_dir(&p) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}
