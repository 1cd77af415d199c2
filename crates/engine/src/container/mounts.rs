//! `-v`, `--mount` and `--tmpfs` specifications, parsed and checked as dockerd does.

use std::path::Path;

use bollard_stubs::models::MountTypeEnum;

use super::{MountKind, MountSpec};
use crate::error::{EngineError, Result};

/// Internal option of a read-only bind (API 1.44's `BindOptions.ReadOnlyNonRecursive`, and
/// the default for clients older than 1.44): only the bind itself is read-only, mounts below
/// its source stay as they are.
pub const RO_NON_RECURSIVE: &str = "ro-nonrecursive";
/// Internal option of a read-only bind (`BindOptions.ReadOnlyForceRecursive`): read-only all
/// the way down, or the start fails.
pub const RO_FORCE_RECURSIVE: &str = "ro-forcerecursive";

/// How a read-only bind or volume is made read-only at start: `Some("rro")` (every mount
/// below it too, Docker 25's default where the kernel has `mount_setattr`), `None` (the bind
/// alone, as before API 1.44). `kernel_rro`: whether the kernel can.
pub fn read_only_recursion(m: &MountSpec, kernel_rro: bool) -> Result<Option<&'static str>> {
    if m.rw || m.kind == MountKind::Tmpfs {
        return Ok(None);
    }
    let has = |o: &str| m.options.iter().any(|x| x == o);
    if has(RO_FORCE_RECURSIVE) {
        if !kernel_rro {
            return Err(EngineError::invalid(format!(
                "mount {}: recursively read-only mounts need Linux 5.12 or later (mount_setattr)",
                m.destination
            )));
        }
        return Ok(Some("rro"));
    }
    Ok((kernel_rro && !has(RO_NON_RECURSIVE) && !has("nonrecursive")).then_some("rro"))
}

/// Whether this kernel has `mount_setattr` with `AT_RECURSIVE` (Linux 5.12).
pub fn kernel_has_rro() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        let mut it = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
        let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (major, minor) >= (5, 12)
    })
}

/// The propagation a mount gets: as asked, else `rprivate` — or `rslave` for a bind from
/// inside the daemon's data root, so mounts the daemon makes there later reach the container
/// (as dockerd does).
pub fn effective_propagation<'a>(m: &'a MountSpec, daemon_root: &std::path::Path) -> &'a str {
    if !m.propagation.is_empty() {
        return &m.propagation;
    }
    if m.kind == MountKind::Bind && within_daemon_root(&m.source, daemon_root) {
        return "rslave";
    }
    "rprivate"
}

/// A bind source inside the daemon's root, or holding it.
fn within_daemon_root(source: &str, daemon_root: &std::path::Path) -> bool {
    let s = Path::new(source);
    s.starts_with(daemon_root) || daemon_root.starts_with(s)
}

/// As dockerd: a bind of (or around) the daemon's root must propagate mounts from it (the
/// daemon unmounts container filesystems there; a private copy would hold them).
pub fn check_daemon_root(m: &MountSpec, daemon_root: &std::path::Path) -> Result<()> {
    if m.kind != MountKind::Bind
        || !within_daemon_root(&m.source, daemon_root)
        || matches!(m.propagation.as_str(), "" | "rslave" | "rshared")
    {
        return Ok(());
    }
    Err(EngineError::invalid(format!(
        "invalid mount config: must use either propagation mode \"rslave\" or \"rshared\" when mount source is within the daemon root, daemon root: {:?}, bind mount source: {:?}, propagation: {:?}",
        daemon_root.display().to_string(),
        m.source,
        m.propagation
    )))
}

/// As dockerd at start: a bind asked to be shared (or slave) needs its source on a shared (or
/// shared or slave) mount of the host, or nothing would propagate.
pub fn check_source_propagation(m: &MountSpec) -> Result<()> {
    let want_shared = matches!(m.propagation.as_str(), "shared" | "rshared");
    let want_slave = matches!(m.propagation.as_str(), "slave" | "rslave");
    if m.kind != MountKind::Bind || !(want_shared || want_slave) {
        return Ok(());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let Some((point, shared, slave)) = containing_mount(&info, Path::new(&m.source)) else { return Ok(()) };
    if want_shared && !shared {
        return Err(EngineError::invalid(format!(
            "path {} is mounted on {point} but it is not a shared mount",
            m.source
        )));
    }
    if want_slave && !shared && !slave {
        return Err(EngineError::invalid(format!(
            "path {} is mounted on {point} but it is not a shared or slave mount",
            m.source
        )));
    }
    Ok(())
}

/// The mount point holding `path` (the longest one that is a prefix; the last mounted of equal
/// ones), and whether it is shared and whether it is a slave.
fn containing_mount(mountinfo: &str, path: &Path) -> Option<(String, bool, bool)> {
    let mut best: Option<(String, bool, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = point.replace("\\040", " ");
        if !path.starts_with(&point) {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for o in optional {
            shared |= o.starts_with("shared:");
            slave |= o.starts_with("master:");
        }
        if best.as_ref().is_none_or(|(b, _, _)| point.len() >= b.len()) {
            best = Some((point, shared, slave));
        }
    }
    best
}

pub(crate) fn clean_dest(d: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(EngineError::invalid(format!("invalid mount config: mount path must be absolute: {d}")));
    }
    let mut out = Vec::new();
    for c in d.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Parses `-v SRC:DST[:OPTS]` / `-v DST`.
pub fn parse_bind(spec: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(EngineError::invalid(format!("invalid volume specification: '{spec}'")));
        }
    };
    if dst.is_empty() {
        return Err(EngineError::invalid(format!("invalid volume specification: '{spec}'")));
    }
    let destination = clean_dest(dst)?;
    if destination == "/" {
        return Err(EngineError::invalid(format!("invalid volume specification: '{spec}': destination can't be '/'")));
    }
    let mut rw = true;
    let mut propagation = String::new();
    let mut copy_up = true;
    let mut options = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            // Newer dockerd's read-only recursion modes (bind mounts only, checked below).
            "ro-non-recursive" => (rw, options) = (false, vec![RO_NON_RECURSIVE.to_string()]),
            "ro-force-recursive" | "rro" => (rw, options) = (false, vec![RO_FORCE_RECURSIVE.to_string()]),
            "z" | "Z" => {}
            "nocopy" => copy_up = false,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => propagation = o.to_string(),
            _ => return Err(EngineError::invalid(format!("invalid mode: {o}"))),
        }
    }
    let kind = if src.is_empty() || !src.starts_with('/') { MountKind::Volume } else { MountKind::Bind };
    if !options.is_empty() && kind != MountKind::Bind {
        return Err(EngineError::invalid(format!(
            "invalid volume specification: '{spec}': mount mode {opts:?} requires a bind mount"
        )));
    }
    if kind == MountKind::Volume && !src.is_empty() && !crate::volumes::valid_name(src) {
        return Err(EngineError::invalid(format!(
            "create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(MountSpec {
        kind,
        source: src.to_string(),
        destination,
        rw,
        mode: opts.to_string(),
        // Empty: decided at start (rprivate, or rslave for a source inside the daemon's root).
        propagation,
        options,
        copy_up,
        anonymous: src.is_empty(),
    })
}

pub fn parse_mount(m: &bollard_stubs::models::Mount) -> Result<MountSpec> {
    let target = m.target.clone().unwrap_or_default();
    if target.is_empty() {
        return Err(EngineError::invalid("invalid mount config: Target must not be empty"));
    }
    let destination = clean_dest(&target)?;
    let rw = m.read_only != Some(true);
    let src = m.source.clone().unwrap_or_default();
    match m.typ {
        Some(MountTypeEnum::BIND) => {
            if src.is_empty() {
                return Err(EngineError::invalid(
                    "invalid mount config for type \"bind\": field Source must not be empty",
                ));
            }
            if !Path::new(&src).exists() {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                )));
            }
            let propagation = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation.as_ref())
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_default();
            let opt = |f: fn(&bollard_stubs::models::MountBindOptions) -> Option<bool>| {
                m.bind_options.as_ref().and_then(f).unwrap_or(false)
            };
            let non_recursive = opt(|b| b.non_recursive);
            let ro_non_recursive = opt(|b| b.read_only_non_recursive);
            let ro_force_recursive = opt(|b| b.read_only_force_recursive);
            let refuse =
                |why: &str| Err(EngineError::invalid(format!("invalid mount config for type \"bind\": {why}")));
            if (ro_non_recursive || ro_force_recursive) && rw {
                return refuse("BindOptions.ReadOnlyNonRecursive and ReadOnlyForceRecursive need ReadOnly");
            }
            if ro_non_recursive && ro_force_recursive {
                return refuse("cannot set both BindOptions.ReadOnlyNonRecursive and ReadOnlyForceRecursive");
            }
            if ro_force_recursive && non_recursive {
                return refuse("cannot set both BindOptions.NonRecursive and ReadOnlyForceRecursive");
            }
            if ro_force_recursive && !matches!(propagation.as_str(), "" | "rprivate") {
                return refuse("BindOptions.ReadOnlyForceRecursive needs propagation rprivate");
            }
            let mut options: Vec<String> = Vec::new();
            if non_recursive {
                options.push("nonrecursive".into());
            }
            if ro_non_recursive {
                options.push(RO_NON_RECURSIVE.into());
            }
            if ro_force_recursive {
                options.push(RO_FORCE_RECURSIVE.into());
            }
            Ok(MountSpec {
                kind: MountKind::Bind,
                source: src,
                destination,
                rw,
                mode: String::new(),
                propagation,
                options,
                copy_up: false,
                anonymous: false,
            })
        }
        Some(MountTypeEnum::VOLUME) => {
            if !src.is_empty() && !crate::volumes::valid_name(&src) {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"volume\": invalid volume name {src:?}"
                )));
            }
            let nocopy = m.volume_options.as_ref().and_then(|v| v.no_copy).unwrap_or(false);
            Ok(MountSpec {
                kind: MountKind::Volume,
                anonymous: src.is_empty(),
                source: src,
                destination,
                rw,
                mode: if rw { "z".into() } else { "ro".into() },
                propagation: String::new(),
                options: vec![],
                copy_up: !nocopy,
            })
        }
        Some(MountTypeEnum::TMPFS) => {
            if !src.is_empty() {
                return Err(EngineError::invalid(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified",
                ));
            }
            let mut options = Vec::new();
            if let Some(t) = &m.tmpfs_options {
                if let Some(s) = t.size_bytes.filter(|s| *s > 0) {
                    options.push(format!("size={s}"));
                }
                if let Some(mode) = t.mode.filter(|m| *m > 0) {
                    options.push(format!("mode={mode:o}"));
                }
            }
            Ok(MountSpec {
                kind: MountKind::Tmpfs,
                source: String::new(),
                destination,
                rw,
                mode: String::new(),
                propagation: String::new(),
                options,
                copy_up: false,
                anonymous: false,
            })
        }
        other => Err(EngineError::invalid(format!("invalid mount config: mount type {other:?} is not supported"))),
    }
}

pub fn parse_tmpfs(dest: &str, opts: &str) -> Result<MountSpec> {
    let destination = clean_dest(dest)?;
    if destination == "/" {
        return Err(EngineError::invalid(format!("invalid tmpfs mount {dest:?}: destination can't be '/'")));
    }
    let mut rw = true;
    let mut options = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            o if o.starts_with("size=")
                || o.starts_with("mode=")
                || o.starts_with("uid=")
                || o.starts_with("gid=")
                || o.starts_with("nr_inodes=") =>
            {
                options.push(o.to_string())
            }
            "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" | "atime" | "noatime" | "relatime"
            | "strictatime" | "nodiratime" => options.push(o.to_string()),
            _ => return Err(EngineError::invalid(format!("invalid tmpfs option {o:?}"))),
        }
    }
    Ok(MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        destination,
        rw,
        mode: opts.to_string(),
        propagation: String::new(),
        options,
        copy_up: false,
        anonymous: false,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_mount_holding_a_path_and_its_propagation() {
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    40 27 0:50 / /tmp/shr rw shared:12 - tmpfs tmp rw\n\
                    41 27 0:51 / /tmp/sl rw master:12 - tmpfs tmp rw\n";
        let at = |p: &str| containing_mount(info, Path::new(p)).unwrap();
        assert_eq!(at("/tmp/xx"), ("/".to_string(), false, false));
        assert_eq!(at("/tmp/shr/a"), ("/tmp/shr".to_string(), true, false));
        assert_eq!(at("/tmp/sl"), ("/tmp/sl".to_string(), false, true));
        assert_eq!(at("/tmp/shrx"), ("/".to_string(), false, false), "a prefix by components, not by bytes");
    }
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let m = parse_bind("/host:/ctr:ro").unwrap();
        assert_eq!(
            (m.kind, m.rw, m.source.as_str(), m.destination.as_str()),
            (MountKind::Bind, false, "/host", "/ctr")
        );
        let m = parse_bind("data:/var/lib/data").unwrap();
        assert_eq!((m.kind, m.rw, m.anonymous), (MountKind::Volume, true, false));
        let m = parse_bind("/only/dest").unwrap();
        assert!(m.anonymous && m.kind == MountKind::Volume);
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("data:relative").is_err());
        assert!(parse_bind("/x:/y:bogus").is_err());
        assert!(parse_bind("../etc:/x").is_err());
        assert!(parse_bind("/x:/").is_err());
        assert_eq!(parse_bind("/x:/a/../b/").unwrap().destination, "/b");
    }

    #[test]
    fn tmpfs_options() {
        let m = parse_tmpfs("/run", "rw,size=64m,mode=1777").unwrap();
        assert_eq!(m.options, vec!["size=64m", "mode=1777"]);
        assert!(parse_tmpfs("/run", "size=1m,evil=1").is_err());
    }
}
