//! `docker stats` (from the container's cgroups) and `docker top` (from /proc).

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats,
    ContainerNetworkStats, ContainerPidsStats, ContainerStatsResponse, ContainerThrottlingData, ContainerTopResponse,
};
use skiff_runtime::cgroups;

use super::Containers;
use crate::error::{EngineError, Result};

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .flatten()
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// skiff's own stats fields (see [`Containers::skiff_stats`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkiffStats {
    /// Cumulative time the container's threads waited on a run queue, and ran.
    pub runqueue_wait_ns: u64,
    pub run_ns: u64,
    /// Over the interval: the share of its threads' CPU demand spent waiting for a CPU (time
    /// throttled by its quota, during which they stay queued, not counted).
    pub runqueue_wait_percent: Option<f64>,
    /// Over the interval: the share of CFS periods in which it was throttled.
    pub throttled_periods_percent: Option<f64>,
    /// `--cpus` as the kernel enforces it (quota / period).
    pub cpu_quota_cpus: Option<f64>,
    pub oom_kills: u64,
    /// The cgroup's pressure stall information (cgroup v2 only), 10 s averages in percent.
    pub pressure: Option<PressureStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PressureStats {
    pub cpu_some_avg10: f64,
    pub memory_some_avg10: f64,
    pub memory_full_avg10: f64,
    pub io_some_avg10: f64,
}

pub struct Sample {
    pub stats: cgroups::Stats,
    pub system_ns: u64,
    /// The scheduler's times of the container's threads (run-queue wait).
    pub sched: cgroups::SchedTimes,
    pub read: String,
    /// Per interface of the container's network namespace (not `lo`); none with the host's.
    pub networks: Option<HashMap<String, ContainerNetworkStats>>,
}

impl Sample {
    /// The container's threads' run time and run-queue wait since `pre` (since they started
    /// without one). Time throttled by its quota is not counted as waiting: a throttled group's
    /// threads stay queued, but it is the quota that holds them, not the host.
    pub fn run_and_wait_since(&self, pre: Option<&Sample>) -> (u64, u64) {
        let (sched, throttled) = match pre {
            Some(p) => (p.sched, p.stats.cpu_throttled_ns),
            None => (cgroups::SchedTimes::default(), 0),
        };
        let run = self.sched.run_ns.saturating_sub(sched.run_ns);
        let wait = self.sched.wait_ns.saturating_sub(sched.wait_ns);
        (run, wait.saturating_sub(self.stats.cpu_throttled_ns.saturating_sub(throttled)))
    }
}

/// Parses `/proc/<pid>/net/dev`: the counters of every interface but `lo`.
pub fn parse_net_dev(text: &str) -> HashMap<String, ContainerNetworkStats> {
    let mut out = HashMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.is_empty() || name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest.split_whitespace().map_while(|x| x.parse().ok()).collect();
        if v.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            ContainerNetworkStats {
                rx_bytes: Some(v[0]),
                rx_packets: Some(v[1]),
                rx_errors: Some(v[2]),
                rx_dropped: Some(v[3]),
                tx_bytes: Some(v[8]),
                tx_packets: Some(v[9]),
                tx_errors: Some(v[10]),
                tx_dropped: Some(v[11]),
                ..Default::default()
            },
        );
    }
    out
}

impl Containers {
    fn cgroup_path(&self, id: &str) -> String {
        format!("/skiff/{id}")
    }

    /// One reading of a running container's cgroups (`None` when it is not running).
    pub fn sample(&self, key: &str) -> Result<Option<Sample>> {
        let c = self.get(key)?;
        if !c.status().is_live() {
            return Ok(None);
        }
        let rec = c.record();
        let host_net = rec.host_config.network_mode.as_deref() == Some("host");
        let networks = (!host_net && rec.state.pid > 0)
            .then(|| std::fs::read_to_string(format!("/proc/{}/net/dev", rec.state.pid)).ok())
            .flatten()
            .map(|t| parse_net_dev(&t))
            .filter(|n| !n.is_empty());
        let cgroup = self.cgroup_path(&c.id);
        let pids = self.layout.pids(&cgroup).unwrap_or_default();
        Ok(Some(Sample {
            stats: self.layout.stats(&cgroup),
            system_ns: cgroups::system_cpu_ns(),
            sched: cgroups::sched_times(&pids),
            read: skiff_common::timefmt::now(),
            networks,
        }))
    }

    /// The Engine API stats object from a reading and the one before it.
    pub fn stats_response(
        &self,
        key: &str,
        cur: Option<&Sample>,
        pre: Option<&Sample>,
    ) -> Result<ContainerStatsResponse> {
        let c = self.get(key)?;
        let rec = c.record();
        let cpu = |s: Option<&Sample>| {
            s.map(|s| ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(s.stats.cpu_total_ns),
                    percpu_usage: if s.stats.per_cpu_ns.is_empty() { None } else { Some(s.stats.per_cpu_ns.clone()) },
                    usage_in_kernelmode: Some(s.stats.cpu_system_ns),
                    usage_in_usermode: Some(s.stats.cpu_user_ns),
                }),
                system_cpu_usage: Some(s.system_ns),
                online_cpus: Some(online_cpus()),
                throttling_data: Some(ContainerThrottlingData {
                    periods: Some(s.stats.cpu_periods),
                    throttled_periods: Some(s.stats.cpu_throttled_periods),
                    throttled_time: Some(s.stats.cpu_throttled_ns),
                }),
            })
            .unwrap_or_default()
        };
        let memory = cur.map(|s| {
            let limit = s.stats.memory_limit.filter(|l| *l < (1u64 << 62)).unwrap_or_else(mem_total);
            ContainerMemoryStats {
                usage: Some(s.stats.memory_usage),
                max_usage: if self.layout.is_v2() { None } else { Some(s.stats.memory_max_usage) },
                stats: Some(s.stats.memory_stat.iter().map(|(k, v)| (k.clone(), *v)).collect::<HashMap<_, _>>()),
                failcnt: if self.layout.is_v2() { None } else { Some(s.stats.memory_failcnt) },
                limit: Some(limit),
                ..Default::default()
            }
        });
        let entries = |list: &[cgroups::BlkioEntry]| {
            list.iter()
                .map(|e| ContainerBlkioStatEntry {
                    major: Some(e.major),
                    minor: Some(e.minor),
                    op: Some(e.op.clone()),
                    value: Some(e.value),
                })
                .collect()
        };
        let blkio = cur.map(|s| ContainerBlkioStats {
            io_service_bytes_recursive: Some(entries(&s.stats.blkio)),
            io_serviced_recursive: Some(entries(&s.stats.blkio_ops)),
            ..Default::default()
        });
        Ok(ContainerStatsResponse {
            name: Some(format!("/{}", rec.name)),
            id: Some(rec.id.clone()),
            read: Some(cur.map(|s| s.read.clone()).unwrap_or_else(|| skiff_common::timefmt::ZERO.into())),
            preread: Some(pre.map(|s| s.read.clone()).unwrap_or_else(|| skiff_common::timefmt::ZERO.into())),
            pids_stats: cur
                .map(|s| ContainerPidsStats { current: Some(s.stats.pids_current), limit: s.stats.pids_limit }),
            blkio_stats: blkio.or(Some(ContainerBlkioStats::default())),
            num_procs: Some(0),
            storage_stats: Some(Default::default()),
            cpu_stats: Some(cpu(cur)),
            precpu_stats: Some(cpu(pre)),
            memory_stats: memory.or(Some(ContainerMemoryStats::default())),
            networks: cur.and_then(|s| s.networks.clone()),
        })
    }

    /// What skiff adds to Docker's stats object (under `"skiff"`): the run-queue wait of the
    /// container's threads, CFS throttling and the CPU quota, OOM kills, and the cgroup's
    /// pressure stall information where the kernel keeps it (cgroup v2). Rates are over the
    /// interval between the two readings. See docs/PERFORMANCE-ANALYSIS.md.
    pub fn skiff_stats(cur: &Sample, pre: Option<&Sample>) -> SkiffStats {
        let (run, wait) = cur.run_and_wait_since(pre);
        let zero = cgroups::Stats::default();
        let before = pre.map_or(&zero, |p| &p.stats);
        let periods = cur.stats.cpu_periods.saturating_sub(before.cpu_periods);
        let throttled = cur.stats.cpu_throttled_periods.saturating_sub(before.cpu_throttled_periods);
        let pct = |part: u64, whole: u64| (whole > 0).then(|| 100.0 * part as f64 / whole as f64);
        SkiffStats {
            runqueue_wait_ns: cur.sched.wait_ns,
            run_ns: cur.sched.run_ns,
            runqueue_wait_percent: pct(wait, wait + run),
            throttled_periods_percent: pct(throttled, periods),
            cpu_quota_cpus: cur.stats.cpu_quota.map(|(q, p)| q as f64 / p.max(1) as f64),
            oom_kills: cur.stats.oom_kills,
            pressure: cur.stats.psi.map(|p| PressureStats {
                cpu_some_avg10: p.cpu.some_avg10,
                memory_some_avg10: p.memory.some_avg10,
                memory_full_avg10: p.memory.full_avg10,
                io_some_avg10: p.io.some_avg10,
            }),
        }
    }

    /// `docker top` with ps-like columns.
    pub fn top(self: &Arc<Self>, key: &str) -> Result<ContainerTopResponse> {
        let c = self.get(key)?;
        if !c.status().is_live() {
            return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
        }
        let pids = self.layout.pids(&self.cgroup_path(&c.id))?;
        let ticks = 100u64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<i64>().ok())))
            .unwrap_or(0);
        let users = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user_name = |uid: &str| {
            users.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        };
        let mut procs = Vec::new();
        for pid in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(rp) = stat.rfind(')') else { continue };
            let f: Vec<&str> = stat[rp + 2..].split_whitespace().collect();
            if f.len() < 20 {
                continue;
            }
            let ppid = f[1];
            let tty_nr: i64 = f[4].parse().unwrap_or(0);
            let utime: u64 = f[11].parse().unwrap_or(0);
            let stime: u64 = f[12].parse().unwrap_or(0);
            let start_ticks: u64 = f[19].parse().unwrap_or(0);
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("0")
                .to_string();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = if cmdline.is_empty() {
                let comm = &stat[stat.find('(').map(|i| i + 1).unwrap_or(0)..rp];
                format!("[{comm}]")
            } else {
                cmdline
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let cpu_secs = (utime + stime) / ticks;
            let time = format!("{:02}:{:02}:{:02}", cpu_secs / 3600, (cpu_secs / 60) % 60, cpu_secs % 60);
            let started = boot + (start_ticks / ticks) as i64;
            let stime_s = {
                let t = skiff_common::timefmt::format_unix(started, 0);
                t.get(11..16).unwrap_or("").to_string()
            };
            let tty = if tty_nr == 0 {
                "?".to_string()
            } else {
                format!("pts/{}", (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00))
            };
            procs.push(vec![
                user_name(&uid).unwrap_or(uid),
                pid.to_string(),
                ppid.to_string(),
                "0".into(),
                stime_s,
                tty,
                time,
                cmd,
            ]);
        }
        Ok(ContainerTopResponse {
            titles: Some(
                ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"].iter().map(|s| s.to_string()).collect(),
            ),
            processes: Some(procs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_queue_wait_leaves_out_time_throttled_by_the_quota() {
        let sample = |run_ns, wait_ns, throttled_ns| Sample {
            stats: cgroups::Stats { cpu_throttled_ns: throttled_ns, ..Default::default() },
            system_ns: 0,
            sched: cgroups::SchedTimes { run_ns, wait_ns, slices: 0 },
            read: String::new(),
            networks: None,
        };
        let (a, b) = (sample(100, 50, 20), sample(300, 400, 220));
        assert_eq!(b.run_and_wait_since(Some(&a)), (200, 150), "350 queued, 200 of it throttled");
        assert_eq!(b.run_and_wait_since(None), (300, 180));
        // Threads that ended took their counts: never below zero.
        assert_eq!(a.run_and_wait_since(Some(&b)), (0, 0));
        let k = Containers::skiff_stats(&b, Some(&a));
        assert_eq!(k.runqueue_wait_percent, Some(100.0 * 150.0 / 350.0));
    }

    #[test]
    fn net_dev_counters_without_lo() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0: 104857600   7000    1    2    0     0          0         0   123456    3000    3    4    0     0       0          0
garbage line
  eth1: 1 2 3
";
        let n = parse_net_dev(text);
        assert_eq!(n.len(), 1, "{n:?}");
        let e = &n["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (Some(104857600), Some(7000), Some(1), Some(2))
        );
        assert_eq!((e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped), (Some(123456), Some(3000), Some(3), Some(4)));
        assert!(parse_net_dev("").is_empty());
        assert!(parse_net_dev(":::\n\n:: 1 2").is_empty());
    }
}
