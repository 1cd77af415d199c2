//! Capabilities: Docker's default set, `--cap-add`/`--cap-drop`, and what `--privileged` grants
//! (every capability this daemon holds — not every capability the kernel knows, which fails on
//! hosts such as this VM that lack CAP_SYS_RESOURCE).

use std::collections::BTreeSet;

/// Capability names by number (linux/capability.h).
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set.
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `ALL` stays `ALL`.
pub fn normalize(name: &str) -> Result<String, String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    if ALL.contains(&full.as_str()) { Ok(full) } else { Err(format!("unknown capability: {name:?}")) }
}

/// Capabilities in this process's bounding set.
pub fn held() -> BTreeSet<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    ALL.iter().enumerate().filter(|(i, _)| mask & (1u64 << i) != 0).map(|(_, n)| n.to_string()).collect()
}

/// The capability set of a container: defaults (or everything held, if privileged), then drops,
/// then adds (Docker's order: `--cap-drop ALL --cap-add X` keeps X).
pub fn resolve(
    privileged: bool,
    add: &[String],
    drop: &[String],
    held: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    if privileged {
        return Ok(held.clone());
    }
    let mut set: BTreeSet<String> = DEFAULT.iter().map(|s| s.to_string()).collect();
    let add: Vec<String> = add.iter().map(|c| normalize(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| normalize(c)).collect::<Result<_, _>>()?;
    if drop.iter().any(|d| d == "ALL") {
        set.clear();
    } else {
        for d in &drop {
            set.remove(d);
        }
    }
    if add.iter().any(|a| a == "ALL") {
        set = held.clone();
    } else {
        for a in add {
            set.insert(a);
        }
    }
    // What we do not hold we cannot grant.
    set.retain(|c| held.contains(c));
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<String> {
        ALL.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_and_drop() {
        let s = resolve(false, &["net_admin".into()], &["MKNOD".into()], &all()).unwrap();
        assert!(s.contains("CAP_NET_ADMIN"));
        assert!(!s.contains("CAP_MKNOD"));
        assert!(s.contains("CAP_CHOWN"));
        let s = resolve(false, &["CHOWN".into()], &["ALL".into()], &all()).unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec!["CAP_CHOWN"]);
        assert!(resolve(false, &["CAP_BOGUS".into()], &[], &all()).is_err());
    }

    #[test]
    fn privileged_gets_what_is_held() {
        let mut held = all();
        held.remove("CAP_SYS_RESOURCE");
        let s = resolve(true, &[], &[], &held).unwrap();
        assert!(!s.contains("CAP_SYS_RESOURCE"));
        assert!(s.contains("CAP_SYS_ADMIN"));
    }
}
