//! Small filesystem helpers shared by the stores: atomic writes, directory sync, sizes.

use std::fs::{self, File};
use std::io::{self, Write};
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

/// Removes a path and everything below it; a missing path is not an error. The walk uses
/// descriptors only (any depth), never follows symlinks and never enters a mount point.
pub fn remove_all(path: &Path) -> io::Result<()> {
    crate::tree::remove_all(path)
}

/// Disk usage of a tree in bytes (apparent sizes of regular files and symlinks, each
/// hard-linked inode counted once), without following symlinks or crossing mounts.
pub fn tree_size(path: &Path) -> u64 {
    crate::tree::tree_size(path)
}
