//! Looking inside a container's root filesystem from the host, never following its symlinks
//! out of it: every path is resolved with `openat2(RESOLVE_IN_ROOT)`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A user or group named in a `USER`/`--user`/`--chown` spec that the image does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchUser(pub String);

impl std::fmt::Display for NoSuchUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSuchUser {}

fn open_root(rootfs: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens `path` (container-absolute) inside `rootfs`.
pub fn open_in(rootfs: &Path, path: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let root = open_root(rootfs)?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    Ok(rustix::fs::openat2(
        &root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Reads a small file inside the rootfs; `None` if it does not exist.
pub fn read_file(rootfs: &Path, path: &str, limit: u64) -> Option<String> {
    let fd = open_in(rootfs, Path::new(path), OFlags::RDONLY).ok()?;
    let mut s = String::new();
    std::fs::File::from(fd).take(limit).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Resolves `path` inside the rootfs to the host path it names (following the container's
/// symlinks within the rootfs). Missing trailing components are kept as they are.
pub fn resolve(rootfs: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let existing;
    let mut rest = Vec::new();
    let comps: Vec<_> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    // Find the longest existing prefix.
    let mut split = comps.len();
    loop {
        let prefix: PathBuf = comps[..split].iter().collect();
        match open_in(rootfs, &Path::new("/").join(&prefix), OFlags::PATH) {
            Ok(fd) => {
                let real = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))?;
                existing = real;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && split > 0 => split -= 1,
            Err(e) => return Err(e),
        }
    }
    for c in &comps[split..] {
        rest.push(c.as_os_str().to_owned());
    }
    let mut out = existing;
    for r in rest {
        out.push(r);
    }
    if !out.starts_with(rootfs) {
        return Err(std::io::Error::other(format!("{} resolves outside the container", path.display())));
    }
    Ok(out)
}

/// `mkdir -p` inside the rootfs (for WORKDIR and mount points), owned by uid/gid when created.
pub fn mkdir_all(rootfs: &Path, path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut cur = PathBuf::from("/");
    for c in path.components() {
        let Component::Normal(n) = c else { continue };
        let parent = open_in(rootfs, &cur, OFlags::PATH | OFlags::DIRECTORY)?;
        cur.push(n);
        match rustix::fs::mkdirat(&parent, n, Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                let _ = rustix::fs::chownat(
                    &parent,
                    n,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A user resolved against the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry { name: f[0].into(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5].into() })
        })
        .collect()
}

fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
            Some((f[0].into(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Docker's rules: `user[:group]`, each a name or a number; names must exist, numbers need not.
pub fn resolve_user(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, NoSuchUser> {
    let pw = passwd(&read_file(rootfs, "/etc/passwd", 1 << 20).unwrap_or_default());
    let gr = groups(&read_file(rootfs, "/etc/group", 1 << 20).unwrap_or_default());
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, home, name) = match u.parse::<u32>() {
        Ok(n) => match pw.iter().find(|e| e.uid == n) {
            Some(e) => (n, e.gid, e.home.clone(), Some(e.name.clone())),
            None => (n, 0, "/".to_string(), None),
        },
        Err(_) => match pw.iter().find(|e| e.name == u) {
            Some(e) => (e.uid, e.gid, e.home.clone(), Some(e.name.clone())),
            None => {
                return Err(NoSuchUser(format!("unable to find user {u}: no matching entries in passwd file")));
            }
        },
    };
    let find_group = |g: &str| -> Result<u32, NoSuchUser> {
        match g.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => gr
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| NoSuchUser(format!("unable to find group {g}: no matching entries in group file"))),
        }
    };
    if let Some(g) = g {
        gid = find_group(g)?;
    }
    let mut additional = Vec::new();
    if g.is_none()
        && let Some(n) = &name
    {
        for (_, id, members) in &gr {
            if members.iter().any(|m| m == n) && *id != gid {
                additional.push(*id);
            }
        }
    }
    for g in group_add {
        let id = find_group(g)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids: additional, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nwww:x:33:\nstaff:x:50:www\n").unwrap();
        d
    }

    #[test]
    fn resolves_users_like_docker() {
        let d = root();
        let r = resolve_user(d.path(), "www", &[]).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (33, 33, vec![50]));
        assert_eq!(r.home, "/var/www");
        let r = resolve_user(d.path(), "1000:50", &[]).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 50));
        let r = resolve_user(d.path(), "", &["staff".into()]).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (0, 0, vec![50]));
        assert!(resolve_user(d.path(), "nobody", &[]).is_err());
        assert!(resolve_user(d.path(), "root:nogroup", &[]).is_err());
    }

    #[test]
    fn passwd_symlink_cannot_escape() {
        let d = root();
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        // resolves to <root>/etc/passwd, which no longer exists: host's passwd is not read.
        assert!(resolve_user(d.path(), "root", &[]).is_err());
    }

    #[test]
    fn mkdir_stays_inside() {
        let d = root();
        std::os::unix::fs::symlink("/", d.path().join("up")).unwrap();
        mkdir_all(d.path(), Path::new("/up/skiff-mkdir-test/x"), 0, 0).unwrap();
        assert!(d.path().join("skiff-mkdir-test/x").is_dir());
        assert!(!Path::new("/skiff-mkdir-test").exists());
    }
}
