//! The container's Linux limits: device cgroup rules and host devices, rlimits, and the
//! cgroup resources (memory, CPU, block I/O, pids) from its host config.

use std::path::{Path, PathBuf};

use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxPids, LinuxResources,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
};

use crate::error::{EngineError, Result};

fn dev_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(typ);
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_string()));
    d
}

/// Docker's default device cgroup rules.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    vec![
        dev_rule(false, None, None, None, "rwm"),
        dev_rule(true, Some(C), None, None, "m"),
        dev_rule(true, Some(B), None, None, "m"),
        dev_rule(true, Some(C), Some(1), Some(3), "rwm"),    // null
        dev_rule(true, Some(C), Some(1), Some(8), "rwm"),    // random
        dev_rule(true, Some(C), Some(1), Some(7), "rwm"),    // full
        dev_rule(true, Some(C), Some(5), Some(0), "rwm"),    // tty
        dev_rule(true, Some(C), Some(1), Some(5), "rwm"),    // zero
        dev_rule(true, Some(C), Some(1), Some(9), "rwm"),    // urandom
        dev_rule(true, Some(C), Some(136), None, "rwm"),     // pts
        dev_rule(true, Some(C), Some(5), Some(2), "rwm"),    // ptmx
        dev_rule(true, Some(C), Some(5), Some(1), "rwm"),    // console
        dev_rule(true, Some(C), Some(10), Some(200), "rwm"), // tun
    ]
}

/// Every device node on the host, for `--privileged`.
pub(super) fn host_devices() -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_dir() {
                // /dev/pts and /dev/shm, /dev/mqueue are mounted fresh in the container.
                if !matches!(p.file_name().and_then(|n| n.to_str()), Some("pts" | "shm" | "mqueue")) {
                    stack.push(p);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if p == Path::new("/dev/console") || p == Path::new("/dev/ptmx") {
                continue;
            }
            let mut d = LinuxDevice::default();
            d.set_path(p.clone());
            d.set_typ(typ);
            d.set_major(rustix::fs::major(m.rdev()) as i64);
            d.set_minor(rustix::fs::minor(m.rdev()) as i64);
            d.set_file_mode(Some(m.mode() & 0o777));
            d.set_uid(Some(m.uid()));
            d.set_gid(Some(m.gid()));
            out.push(d);
        }
    }
    out
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    Some(match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        "as" => PosixRlimitType::RlimitAs,
        _ => return None,
    })
}

fn current_hard_limit(t: PosixRlimitType) -> Option<u64> {
    use rustix::process::Resource;
    let r = match t {
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitStack => Resource::Stack,
        _ => return None,
    };
    rustix::process::getrlimit(r).maximum
}

pub(super) fn rlimits(hc: &HostConfig, can_raise: bool) -> Result<Option<Vec<PosixRlimit>>> {
    let Some(list) = &hc.ulimits else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for u in list {
        let name = u.name.clone().unwrap_or_default();
        let t = rlimit_type(&name).ok_or_else(|| EngineError::invalid(format!("invalid ulimit type: {name}")))?;
        let soft = u.soft.unwrap_or(0).max(0) as u64;
        let hard = u.hard.unwrap_or(soft as i64).max(0) as u64;
        if soft > hard {
            return Err(EngineError::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        if !can_raise
            && let Some(max) = current_hard_limit(t)
            && hard > max
        {
            return Err(EngineError::invalid(format!(
                "ulimit {name}: hard limit {hard} is above this daemon's own hard limit {max}, which it cannot raise (it lacks CAP_SYS_RESOURCE)"
            )));
        }
        let r = PosixRlimitBuilder::default()
            .typ(t)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(|e| EngineError::invalid(e.to_string()))?;
        out.push(r);
    }
    Ok(Some(out))
}

pub(super) fn resources(hc: &HostConfig, privileged: bool) -> Result<LinuxResources> {
    let mut res = LinuxResources::default();
    res.set_devices(Some(if privileged {
        vec![dev_rule(true, None, None, None, "rwm")]
    } else {
        default_device_rules()
    }));
    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    if let Some(m) = hc.memory.filter(|m| *m > 0) {
        mem.set_limit(Some(m));
        any_mem = true;
        match hc.memory_swap {
            Some(-1) => mem.set_swap(Some(-1)),
            Some(s) if s > 0 => mem.set_swap(Some(s)),
            _ => mem.set_swap(Some(m * 2)),
        };
    }
    if let Some(r) = hc.memory_reservation.filter(|m| *m > 0) {
        mem.set_reservation(Some(r));
        any_mem = true;
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s >= 0) {
        mem.set_swappiness(Some(s as u64));
        any_mem = true;
    }
    if hc.oom_kill_disable == Some(true) {
        mem.set_disable_oom_killer(Some(true));
        any_mem = true;
    }
    if any_mem {
        res.set_memory(Some(mem));
    }
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if let Some(n) = hc.nano_cpus.filter(|n| *n > 0) {
        let period = 100_000u64;
        cpu.set_period(Some(period));
        cpu.set_quota(Some((n as u128 * period as u128 / 1_000_000_000) as i64));
        any_cpu = true;
    }
    if let Some(s) = hc.cpu_shares.filter(|s| *s > 0) {
        cpu.set_shares(Some(s as u64));
        any_cpu = true;
    }
    if let Some(p) = hc.cpu_period.filter(|p| *p > 0) {
        cpu.set_period(Some(p as u64));
        any_cpu = true;
    }
    if let Some(q) = hc.cpu_quota.filter(|q| *q > 0) {
        cpu.set_quota(Some(q));
        any_cpu = true;
    }
    if let Some(c) = hc.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(c));
        any_cpu = true;
    }
    if let Some(m) = hc.cpuset_mems.clone().filter(|c| !c.is_empty()) {
        cpu.set_mems(Some(m));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p > 0) {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    if let Some(w) = hc.blkio_weight.filter(|w| *w > 0) {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    Ok(res)
}
