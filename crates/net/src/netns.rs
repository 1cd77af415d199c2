//! Network namespaces: created for a container before it starts (so its interfaces are ready
//! when its process runs), kept alive by a bind mount of the namespace file, and entered by
//! short-lived threads that configure them.
//!
//! A thread can switch network namespace on its own (`setns(CLONE_NEWNET)` and
//! `unshare(CLONE_NEWNET)` are per-thread for network namespaces), so none of this forks and the
//! daemon's other threads are never affected. Each operation runs in a fresh thread that ends
//! with it.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

fn join<R>(h: std::thread::JoinHandle<io::Result<R>>) -> io::Result<R> {
    h.join().map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// Creates a new network namespace and pins it at `path` (a bind mount of the namespace file).
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path)?;
    let p = path.to_path_buf();
    let h = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        mount(Some("/proc/thread-self/ns/net"), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(io::Error::from)
    });
    let r = join(h);
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unpins a namespace created by [`create`]; the kernel frees it (and the container's end of
/// every veth in it) once no process is left inside.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `f` in a thread that has entered the network namespace at `path` (a pinned file or
/// `/proc/<pid>/ns/net`).
pub fn run_in<F, R>(path: &Path, f: F) -> io::Result<R>
where
    F: FnOnce() -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    let ns = std::fs::File::open(path)?;
    let h = std::thread::spawn(move || -> io::Result<R> {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        f()
    });
    join(h)
}

/// Where a daemon pins its containers' namespaces.
pub fn path_for(dir: &Path, container_id: &str) -> PathBuf {
    dir.join(container_id)
}
