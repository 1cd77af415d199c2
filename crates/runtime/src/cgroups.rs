//! Reading and poking a container's cgroup files, for v1 (including hybrid) and v2.
//!
//! libcontainer creates the cgroups; this module finds them again (same path rules as
//! libcgroups: v1 `<subsystem mount>/<cgroupsPath>`, v2 `/sys/fs/cgroup/<cgroupsPath>`), reads
//! statistics, freezes and thaws, and removes them when the container is gone.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// v1 controllers (possibly with a cgroup2 mount beside them: hybrid). libcgroups uses v1.
    V1 { mounts: BTreeMap<String, PathBuf> },
    /// Everything on one cgroup2 hierarchy.
    V2 { root: PathBuf },
}

impl Layout {
    /// Reads /proc/self/mountinfo.
    pub fn detect() -> io::Result<Layout> {
        Ok(Self::from_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?))
    }

    pub fn from_mountinfo(text: &str) -> Layout {
        let mut mounts = BTreeMap::new();
        let mut unified = None;
        for line in text.lines() {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(unescape(l[4]));
            match r[0] {
                "cgroup2" => {
                    unified.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for opt in r[2].split(',') {
                        let name = opt.strip_prefix("name=").unwrap_or(opt);
                        if KNOWN_V1.contains(&name) {
                            mounts.entry(name.to_string()).or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if mounts.is_empty() {
            Layout::V2 { root: unified.unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")) }
        } else {
            Layout::V1 { mounts }
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// The directory of `cgroup_path` for a v1 subsystem, or the v2 directory.
    pub fn dir(&self, subsystem: &str, cgroup_path: &str) -> Option<PathBuf> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            Layout::V1 { mounts } => mounts.get(subsystem).map(|m| m.join(rel)),
            Layout::V2 { root } => Some(root.join(rel)),
        }
    }

    /// Every directory the container's cgroup has.
    pub fn all_dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let rel = cgroup_path.trim_start_matches('/');
        let mut v: Vec<PathBuf> = match self {
            Layout::V1 { mounts } => mounts.values().map(|m| m.join(rel)).collect(),
            Layout::V2 { root } => vec![root.join(rel)],
        };
        v.sort();
        v.dedup();
        v
    }

    /// Removes the container's cgroup directories, retrying while the kernel still counts
    /// exiting tasks in them.
    pub fn remove(&self, cgroup_path: &str) -> io::Result<()> {
        let rel = cgroup_path.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(());
        }
        let mut last = Ok(());
        for dir in self.all_dirs(cgroup_path) {
            let mut tries = 0;
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc_ebusy()) && tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        last = Err(io::Error::new(e.kind(), format!("removing {}: {e}", dir.display())));
                        break;
                    }
                }
            }
        }
        last
    }

    /// Whether the memory controller recorded an OOM kill in the cgroup.
    pub fn oom_killed(&self, cgroup_path: &str) -> bool {
        match self {
            Layout::V1 { .. } => self
                .dir("memory", cgroup_path)
                .and_then(|d| fs::read_to_string(d.join("memory.oom_control")).ok())
                .map(|s| flat_keyed(&s).get("oom_kill").copied().unwrap_or(0) > 0)
                .unwrap_or(false),
            Layout::V2 { .. } => self
                .dir("", cgroup_path)
                .and_then(|d| fs::read_to_string(d.join("memory.events")).ok())
                .map(|s| flat_keyed(&s).get("oom_kill").copied().unwrap_or(0) > 0)
                .unwrap_or(false),
        }
    }

    /// Freezes or thaws every task in the cgroup, waiting until the kernel says it is done.
    pub fn freeze(&self, cgroup_path: &str, frozen: bool) -> io::Result<()> {
        match self {
            Layout::V1 { .. } => {
                let dir = self
                    .dir("freezer", cgroup_path)
                    .ok_or_else(|| io::Error::other("the freezer cgroup controller is not mounted"))?;
                let want = if frozen { "FROZEN" } else { "THAWED" };
                for _ in 0..1000 {
                    fs::write(dir.join("freezer.state"), want)?;
                    if fs::read_to_string(dir.join("freezer.state"))?.trim() == want {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(io::Error::other(format!("cgroup did not become {want}")))
            }
            Layout::V2 { .. } => {
                let dir = self.dir("", cgroup_path).expect("v2 always has a dir");
                fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                for _ in 0..1000 {
                    let ev = fs::read_to_string(dir.join("cgroup.events"))?;
                    if flat_keyed(&ev).get("frozen").copied() == Some(frozen as u64) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(io::Error::other("cgroup did not freeze"))
            }
        }
    }

    /// Pids in the cgroup.
    pub fn pids(&self, cgroup_path: &str) -> io::Result<Vec<i32>> {
        let dir = match self {
            Layout::V1 { .. } => self.dir("pids", cgroup_path).or_else(|| self.dir("memory", cgroup_path)),
            Layout::V2 { .. } => self.dir("", cgroup_path),
        }
        .ok_or_else(|| io::Error::other("no cgroup directory"))?;
        let text = fs::read_to_string(dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// A snapshot of the statistics `docker stats` shows.
    pub fn stats(&self, cgroup_path: &str) -> Stats {
        let mut s = Stats::default();
        let read = |p: Option<PathBuf>, f: &str| p.and_then(|d| fs::read_to_string(d.join(f)).ok());
        match self {
            Layout::V1 { .. } => {
                let acct = self.dir("cpuacct", cgroup_path);
                s.cpu_total_ns = read(acct.clone(), "cpuacct.usage").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                if let Some(st) = read(acct.clone(), "cpuacct.stat") {
                    let kv = flat_keyed(&st);
                    let tick_ns = 1_000_000_000 / clock_ticks();
                    s.cpu_user_ns = kv.get("user").copied().unwrap_or(0) * tick_ns;
                    s.cpu_system_ns = kv.get("system").copied().unwrap_or(0) * tick_ns;
                }
                if let Some(per) = read(acct, "cpuacct.usage_percpu") {
                    s.per_cpu_ns = per.split_whitespace().filter_map(|v| v.parse().ok()).collect();
                }
                let mem = self.dir("memory", cgroup_path);
                s.memory_usage =
                    read(mem.clone(), "memory.usage_in_bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.memory_max_usage =
                    read(mem.clone(), "memory.max_usage_in_bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.memory_limit = read(mem.clone(), "memory.limit_in_bytes").and_then(|v| v.trim().parse().ok());
                s.memory_failcnt = read(mem.clone(), "memory.failcnt").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                if let Some(st) = read(mem, "memory.stat") {
                    s.memory_stat = flat_keyed(&st);
                }
                let pids = self.dir("pids", cgroup_path);
                s.pids_current = read(pids.clone(), "pids.current").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.pids_limit = read(pids, "pids.max").and_then(|v| v.trim().parse().ok());
                let blk = self.dir("blkio", cgroup_path);
                if let Some(io) = read(blk.clone(), "blkio.throttle.io_service_bytes_recursive")
                    .or_else(|| read(blk.clone(), "blkio.throttle.io_service_bytes"))
                {
                    s.blkio = v1_blkio(&io);
                }
                if let Some(io) = read(blk.clone(), "blkio.throttle.io_serviced_recursive")
                    .or_else(|| read(blk, "blkio.throttle.io_serviced"))
                {
                    s.blkio_ops = v1_blkio(&io);
                }
                let cpu = self.dir("cpu", cgroup_path);
                if let Some(st) = read(cpu.clone(), "cpu.stat") {
                    let kv = flat_keyed(&st);
                    s.cpu_periods = kv.get("nr_periods").copied().unwrap_or(0);
                    s.cpu_throttled_periods = kv.get("nr_throttled").copied().unwrap_or(0);
                    s.cpu_throttled_ns = kv.get("throttled_time").copied().unwrap_or(0);
                }
                let quota = read(cpu.clone(), "cpu.cfs_quota_us").and_then(|v| v.trim().parse::<i64>().ok());
                let period = read(cpu, "cpu.cfs_period_us").and_then(|v| v.trim().parse::<u64>().ok());
                if let (Some(q), Some(p)) = (quota, period)
                    && q > 0
                {
                    s.cpu_quota = Some((q as u64, p));
                }
                s.oom_kills = read(self.dir("memory", cgroup_path), "memory.oom_control")
                    .map(|t| flat_keyed(&t).get("oom_kill").copied().unwrap_or(0))
                    .unwrap_or(0);
            }
            Layout::V2 { .. } => {
                let dir = self.dir("", cgroup_path);
                if let Some(st) = read(dir.clone(), "cpu.stat") {
                    let kv = flat_keyed(&st);
                    s.cpu_total_ns = kv.get("usage_usec").copied().unwrap_or(0) * 1000;
                    s.cpu_user_ns = kv.get("user_usec").copied().unwrap_or(0) * 1000;
                    s.cpu_system_ns = kv.get("system_usec").copied().unwrap_or(0) * 1000;
                    s.cpu_periods = kv.get("nr_periods").copied().unwrap_or(0);
                    s.cpu_throttled_periods = kv.get("nr_throttled").copied().unwrap_or(0);
                    s.cpu_throttled_ns = kv.get("throttled_usec").copied().unwrap_or(0) * 1000;
                }
                if let Some(max) = read(dir.clone(), "cpu.max") {
                    let mut f = max.split_whitespace();
                    if let (Some(Ok(q)), Some(Ok(p))) =
                        (f.next().map(str::parse::<u64>), f.next().map(str::parse::<u64>))
                    {
                        s.cpu_quota = Some((q, p));
                    }
                }
                let events = read(dir.clone(), "memory.events").map(|t| flat_keyed(&t)).unwrap_or_default();
                s.oom_kills = events.get("oom_kill").copied().unwrap_or(0);
                // Times the usage hit memory.max: v1's failcnt.
                s.memory_failcnt = events.get("max").copied().unwrap_or(0);
                s.psi = dir.as_deref().and_then(|d| read_psi(d, ".pressure"));
                s.memory_usage = read(dir.clone(), "memory.current").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.memory_max_usage = read(dir.clone(), "memory.peak").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.memory_limit = read(dir.clone(), "memory.max").and_then(|v| v.trim().parse().ok());
                if let Some(st) = read(dir.clone(), "memory.stat") {
                    s.memory_stat = flat_keyed(&st);
                }
                s.pids_current = read(dir.clone(), "pids.current").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                s.pids_limit = read(dir.clone(), "pids.max").and_then(|v| v.trim().parse().ok());
                if let Some(io) = read(dir, "io.stat") {
                    for line in io.lines() {
                        let mut it = line.split_whitespace();
                        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
                            continue;
                        };
                        for kv in it {
                            let Some((k, v)) = kv.split_once('=') else {
                                continue;
                            };
                            let (list, op) = match k {
                                "rbytes" => (&mut s.blkio, "read"),
                                "wbytes" => (&mut s.blkio, "write"),
                                "rios" => (&mut s.blkio_ops, "read"),
                                "wios" => (&mut s.blkio_ops, "write"),
                                _ => continue,
                            };
                            list.push(BlkioEntry {
                                major: maj.parse().unwrap_or(0),
                                minor: min.parse().unwrap_or(0),
                                op: op.to_string(),
                                value: v.parse().unwrap_or(0),
                            });
                        }
                    }
                }
            }
        }
        s
    }
}

const KNOWN_V1: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "hugetlb",
    "perf_event",
    "rdma",
    "misc",
];

fn libc_ebusy() -> i32 {
    16
}

fn clock_ticks() -> u64 {
    100 // USER_HZ on Linux, what cpuacct.stat counts in
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Three octal digits naming a byte (at most \377; anything larger is left as written).
        let octal = (b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
            .then(|| b[i + 1..i + 4].iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(v) = octal {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses v1 blkio lines (`MAJ:MIN Op value`; a `Total` line has no device and is skipped).
fn v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (maj, min) = f.first()?.split_once(':')?;
            (f.len() == 3).then_some(())?;
            Some(BlkioEntry {
                major: maj.parse().unwrap_or(0),
                minor: min.parse().unwrap_or(0),
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// Parses "key value" lines.
pub fn flat_keyed(s: &str) -> BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub per_cpu_ns: Vec<u64>,
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    pub memory_limit: Option<u64>,
    pub memory_failcnt: u64,
    pub memory_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    /// Bytes read and written per device (`op` `read`/`write`, v1 also `sync`/`async`/`total`).
    pub blkio: Vec<BlkioEntry>,
    /// Read and write operations per device.
    pub blkio_ops: Vec<BlkioEntry>,
    /// CFS bandwidth: enforcement periods, those in which the cgroup was throttled, and the
    /// time its tasks spent throttled.
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_ns: u64,
    /// The CPU quota per period in microseconds, and the period (none: no quota).
    pub cpu_quota: Option<(u64, u64)>,
    /// OOM kills the memory controller made in the cgroup.
    pub oom_kills: u64,
    /// Pressure stall information of the cgroup (cgroup v2 only).
    pub psi: Option<CgroupPsi>,
}

/// One resource's pressure: the share of time some (or all) tasks stalled on it, averaged over
/// 10 s, and the total stall time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    pub some_avg10: f64,
    pub some_total_us: u64,
    pub full_avg10: f64,
    pub full_total_us: u64,
}

/// A cgroup's (or the host's) pressure on CPU, memory and I/O.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CgroupPsi {
    pub cpu: Pressure,
    pub memory: Pressure,
    pub io: Pressure,
}

/// Parses a PSI file (`some avg10=1.00 avg60=… total=…` and `full …`).
pub fn parse_pressure(text: &str) -> Pressure {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next();
        let (mut avg10, mut total) = (0.0, 0);
        for kv in it {
            match kv.split_once('=') {
                Some(("avg10", v)) => avg10 = v.parse().unwrap_or(0.0),
                Some(("total", v)) => total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        match kind {
            Some("some") => (p.some_avg10, p.some_total_us) = (avg10, total),
            Some("full") => (p.full_avg10, p.full_total_us) = (avg10, total),
            _ => {}
        }
    }
    p
}

/// Reads `dir`'s `cpu{suffix}`, `memory{suffix}` and `io{suffix}` — a cgroup's
/// `cpu.pressure`… (suffix `.pressure`), the host's `/proc/pressure/cpu`… (suffix empty);
/// `None` when the kernel keeps none there.
pub fn read_psi(dir: &std::path::Path, suffix: &str) -> Option<CgroupPsi> {
    let read = |name: &str| fs::read_to_string(dir.join(format!("{name}{suffix}"))).ok().map(|t| parse_pressure(&t));
    let cpu = read("cpu")?;
    Some(CgroupPsi { cpu, memory: read("memory").unwrap_or_default(), io: read("io").unwrap_or_default() })
}

/// What the scheduler says of a set of processes' threads (`/proc/PID/task/TID/schedstat`):
/// time on a CPU, time waiting on a run queue for one, and timeslices run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedTimes {
    pub run_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

/// Parses one `schedstat` line (`run_ns wait_ns slices`).
pub fn parse_schedstat(text: &str) -> Option<SchedTimes> {
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    Some(SchedTimes { run_ns: f.next()?.ok()?, wait_ns: f.next()?.ok()?, slices: f.next()?.ok()? })
}

/// The summed scheduler times of every thread of `pids` (threads that ended take their counts
/// with them, so differences between two readings are taken saturating).
pub fn sched_times(pids: &[i32]) -> SchedTimes {
    let mut t = SchedTimes::default();
    for pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            if let Some(s) = fs::read_to_string(task.path().join("schedstat")).ok().and_then(|s| parse_schedstat(&s)) {
                t.run_ns += s.run_ns;
                t.wait_ns += s.wait_ns;
                t.slices += s.slices;
            }
        }
    }
    t
}

/// Host-wide CPU time in nanoseconds (sum of /proc/stat's first line), as Docker reports
/// `system_cpu_usage`.
pub fn system_cpu_ns() -> u64 {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = s.lines().next() else {
        return 0;
    };
    let ticks: u64 = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse::<u64>().ok()).sum();
    ticks * (1_000_000_000 / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HYBRID: &str = "\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
30 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";

    #[test]
    fn detects_hybrid_as_v1() {
        let l = Layout::from_mountinfo(HYBRID);
        let Layout::V1 { mounts } = &l else { panic!("expected v1") };
        assert_eq!(mounts.get("memory").unwrap(), Path::new("/sys/fs/cgroup/memory"));
        assert!(!mounts.contains_key("systemd"));
        assert_eq!(l.dir("memory", "/skiff/abc").unwrap(), Path::new("/sys/fs/cgroup/memory/skiff/abc"));
    }

    #[test]
    fn detects_unified() {
        let l = Layout::from_mountinfo("29 25 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n");
        assert_eq!(l, Layout::V2 { root: PathBuf::from("/sys/fs/cgroup") });
        assert_eq!(l.dir("memory", "skiff/x").unwrap(), Path::new("/sys/fs/cgroup/skiff/x"));
    }

    #[test]
    fn reads_v2_stats_from_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("skiff/c1");
        fs::create_dir_all(&cg).unwrap();
        fs::write(cg.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n").unwrap();
        fs::write(cg.join("memory.current"), "4096\n").unwrap();
        fs::write(cg.join("memory.max"), "max\n").unwrap();
        fs::write(cg.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        fs::write(cg.join("pids.current"), "3\n").unwrap();
        fs::write(cg.join("pids.max"), "100\n").unwrap();
        fs::write(cg.join("io.stat"), "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n").unwrap();
        fs::write(
            cg.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 50\nnr_throttled 40\nthrottled_usec 900\n",
        )
        .unwrap();
        fs::write(cg.join("cpu.max"), "20000 100000\n").unwrap();
        fs::write(
            cg.join("cpu.pressure"),
            "some avg10=12.50 avg60=3.00 avg300=1.00 total=5000\nfull avg10=1.25 avg60=0.00 avg300=0.00 total=100\n",
        )
        .unwrap();
        fs::write(cg.join("memory.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        let l = Layout::V2 { root: dir.path().to_path_buf() };
        let s = l.stats("/skiff/c1");
        assert_eq!((s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns), (50, 40, 900_000));
        assert_eq!(s.cpu_quota, Some((20_000, 100_000)));
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.blkio_ops.len(), 2);
        let psi = s.psi.unwrap();
        assert_eq!((psi.cpu.some_avg10, psi.cpu.some_total_us, psi.cpu.full_total_us), (12.5, 5000, 100));
        assert_eq!(psi.memory.some_total_us, 7);
        assert_eq!(s.cpu_total_ns, 1_500_000);
        assert_eq!(s.memory_usage, 4096);
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.pids_current, 3);
        assert_eq!(s.pids_limit, Some(100));
        assert_eq!(s.blkio.len(), 2);
        assert!(l.oom_killed("/skiff/c1"));
    }

    #[test]
    fn reads_v1_stats_from_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = BTreeMap::new();
        for s in ["cpuacct", "memory", "pids"] {
            fs::create_dir_all(dir.path().join(s).join("skiff/c1")).unwrap();
            mounts.insert(s.to_string(), dir.path().join(s));
        }
        fs::write(dir.path().join("cpuacct/skiff/c1/cpuacct.usage"), "123\n").unwrap();
        fs::write(dir.path().join("memory/skiff/c1/memory.usage_in_bytes"), "8192\n").unwrap();
        fs::write(dir.path().join("memory/skiff/c1/memory.limit_in_bytes"), "67108864\n").unwrap();
        fs::write(
            dir.path().join("memory/skiff/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        fs::write(dir.path().join("pids/skiff/c1/pids.current"), "2\n").unwrap();
        fs::write(dir.path().join("pids/skiff/c1/pids.max"), "max\n").unwrap();
        fs::create_dir_all(dir.path().join("cpu/skiff/c1")).unwrap();
        mounts.insert("cpu".into(), dir.path().join("cpu"));
        fs::write(dir.path().join("cpu/skiff/c1/cpu.stat"), "nr_periods 10\nnr_throttled 9\nthrottled_time 12345\n")
            .unwrap();
        fs::write(dir.path().join("cpu/skiff/c1/cpu.cfs_quota_us"), "20000\n").unwrap();
        fs::write(dir.path().join("cpu/skiff/c1/cpu.cfs_period_us"), "100000\n").unwrap();
        let l = Layout::V1 { mounts };
        let s = l.stats("/skiff/c1");
        assert_eq!((s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns), (10, 9, 12345));
        assert_eq!(s.cpu_quota, Some((20_000, 100_000)));
        assert_eq!(s.psi, None, "no pressure files on v1");
        assert!(v1_blkio("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n8:x\n").len() == 2);
        assert_eq!(s.cpu_total_ns, 123);
        assert_eq!(s.memory_usage, 8192);
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!(s.pids_limit, None);
        assert!(!l.oom_killed("/skiff/c1"));
    }

    #[test]
    fn schedstat_lines_and_this_process() {
        assert_eq!(parse_schedstat("100 20 3\n"), Some(SchedTimes { run_ns: 100, wait_ns: 20, slices: 3 }));
        assert_eq!(parse_schedstat("100 x 3"), None);
        assert_eq!(parse_schedstat(""), None);
        let me = sched_times(&[std::process::id() as i32]);
        assert!(me.run_ns > 0 && me.slices > 0, "{me:?}");
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        // Not a byte: kept as written (it overflowed before; the fuzzer found it).
        assert_eq!(unescape("/x\\777y\\400"), "/x\\777y\\400");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

/// New limits for a running container (`docker update`); `None` leaves a value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

impl Layout {
    /// Writes new limits into the container's cgroup files.
    pub fn update(&self, cgroup_path: &str, u: &Update) -> io::Result<()> {
        let write = |sub: &str, file: &str, v: String| -> io::Result<()> {
            let dir = self
                .dir(sub, cgroup_path)
                .ok_or_else(|| io::Error::other(format!("the {sub} cgroup controller is not available")))?;
            fs::write(dir.join(file), &v).map_err(|e| io::Error::new(e.kind(), format!("writing {v} to {file}: {e}")))
        };
        let unlimited = |v: i64| v <= 0;
        match self {
            Layout::V1 { .. } => {
                // Raising memory above memsw needs memsw raised first; lowering, the reverse.
                if let Some(m) = u.memory {
                    let m = if unlimited(m) { "-1".to_string() } else { m.to_string() };
                    match u.memory_swap {
                        Some(s) => {
                            let s = if s < 0 { "-1".to_string() } else { s.to_string() };
                            if write("memory", "memory.memsw.limit_in_bytes", s.clone()).is_err() {
                                write("memory", "memory.limit_in_bytes", m.clone())?;
                                let _ = write("memory", "memory.memsw.limit_in_bytes", s);
                            } else {
                                write("memory", "memory.limit_in_bytes", m)?;
                            }
                        }
                        None => write("memory", "memory.limit_in_bytes", m)?,
                    }
                }
                if let Some(r) = u.memory_reservation {
                    write(
                        "memory",
                        "memory.soft_limit_in_bytes",
                        if unlimited(r) { "-1".into() } else { r.to_string() },
                    )?;
                }
                if let Some(s) = u.cpu_shares {
                    write("cpu", "cpu.shares", s.to_string())?;
                }
                if let Some(p) = u.cpu_period {
                    write("cpu", "cpu.cfs_period_us", p.to_string())?;
                }
                if let Some(q) = u.cpu_quota {
                    write("cpu", "cpu.cfs_quota_us", if q <= 0 { "-1".into() } else { q.to_string() })?;
                }
                if let Some(c) = &u.cpuset_cpus {
                    write("cpuset", "cpuset.cpus", c.clone())?;
                }
                if let Some(m) = &u.cpuset_mems {
                    write("cpuset", "cpuset.mems", m.clone())?;
                }
                if let Some(p) = u.pids_limit {
                    write("pids", "pids.max", if unlimited(p) { "max".into() } else { p.to_string() })?;
                }
                if let Some(w) = u.blkio_weight {
                    write("blkio", "blkio.weight", w.to_string())?;
                }
            }
            Layout::V2 { .. } => {
                if let Some(m) = u.memory {
                    write("", "memory.max", if unlimited(m) { "max".into() } else { m.to_string() })?;
                    if let Some(s) = u.memory_swap {
                        let swap = if s < 0 || unlimited(m) { "max".to_string() } else { (s - m).max(0).to_string() };
                        write("", "memory.swap.max", swap)?;
                    }
                }
                if let Some(r) = u.memory_reservation {
                    write("", "memory.low", if unlimited(r) { "0".into() } else { r.to_string() })?;
                }
                if let Some(s) = u.cpu_shares {
                    // cgroup v1 shares (2..262144) to v2 weight (1..10000).
                    let w = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                    write("", "cpu.weight", w.to_string())?;
                }
                if u.cpu_quota.is_some() || u.cpu_period.is_some() {
                    let q = u.cpu_quota.filter(|q| *q > 0).map(|q| q.to_string()).unwrap_or_else(|| "max".into());
                    let p = u.cpu_period.unwrap_or(100_000);
                    write("", "cpu.max", format!("{q} {p}"))?;
                }
                if let Some(c) = &u.cpuset_cpus {
                    write("", "cpuset.cpus", c.clone())?;
                }
                if let Some(m) = &u.cpuset_mems {
                    write("", "cpuset.mems", m.clone())?;
                }
                if let Some(p) = u.pids_limit {
                    write("", "pids.max", if unlimited(p) { "max".into() } else { p.to_string() })?;
                }
                if let Some(w) = u.blkio_weight {
                    write("", "io.weight", format!("default {}", (w as u64 * 10000 / 1000).clamp(1, 10000)))?;
                }
            }
        }
        Ok(())
    }
}
