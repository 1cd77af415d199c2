//! The host's side of the question: CPU time by kind (busy, iowait, steal) from `/proc/stat`,
//! runnable tasks and load, memory from `/proc/meminfo`, and pressure stall information from
//! `/proc/pressure/*`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use skiff_runtime::cgroups::{self, CgroupPsi};

/// Cumulative CPU time of all CPUs, in clock ticks, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }

    /// Time not idle and not waiting for I/O (steal included: the CPU was not ours).
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }
}

/// One reading of the host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostSample {
    pub cpu: CpuTimes,
    pub ncpu: u32,
    /// Tasks runnable right now (`procs_running`, this reader included).
    pub procs_running: u64,
    pub load1: f64,
    pub mem_total: u64,
    pub mem_available: u64,
    #[serde(skip)]
    pub psi: Option<CgroupPsi>,
}

/// Parses `/proc/stat`: the `cpu` line, the number of `cpuN` lines, `procs_running`.
pub fn parse_stat(text: &str) -> (CpuTimes, u32, u64) {
    let (mut cpu, mut n, mut running) = (CpuTimes::default(), 0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.map_while(|x| x.parse().ok()).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                cpu = CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                };
            }
            Some(k) if k.starts_with("cpu") && k[3..].bytes().all(|b| b.is_ascii_digit()) && k.len() > 3 => n += 1,
            Some("procs_running") => running = f.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    (cpu, n, running)
}

/// Parses `/proc/meminfo`: `MemTotal` and `MemAvailable`, in bytes.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("MemTotal:"), kb("MemAvailable:"))
}

impl HostSample {
    /// Reads the host (what cannot be read stays zero).
    pub fn read() -> HostSample {
        let (cpu, ncpu, procs_running) =
            std::fs::read_to_string("/proc/stat").map(|t| parse_stat(&t)).unwrap_or_default();
        let load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let (mem_total, mem_available) =
            std::fs::read_to_string("/proc/meminfo").map(|t| parse_meminfo(&t)).unwrap_or_default();
        HostSample {
            cpu,
            ncpu: ncpu.max(1),
            procs_running,
            load1,
            mem_total,
            mem_available,
            psi: cgroups::read_psi(Path::new("/proc/pressure"), ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_and_garbage_is_not_trusted() {
        let stat = "cpu  100 5 50 800 20 1 2 30 0 0\ncpu0 50 2 25 400 10 0 1 15 0 0\ncpu1 50 3 25 400 10 1 1 15 0 0\n\
                    intr 1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\ncpufreq 1\n";
        let (cpu, n, running) = parse_stat(stat);
        assert_eq!((n, running), (2, 3));
        assert_eq!((cpu.total(), cpu.busy(), cpu.steal), (1008, 188, 30));
        assert_eq!(parse_stat("garbage\ncpu x y\n"), (CpuTimes::default(), 0, 0));
        let mem = "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable:   12288000 kB\n";
        assert_eq!(parse_meminfo(mem), (24576000 * 1024, 12288000 * 1024));
        assert_eq!(parse_meminfo("nothing"), (0, 0));
        let live = HostSample::read();
        assert!(live.ncpu >= 1 && live.cpu.total() > 0 && live.mem_total > 0, "{live:?}");
    }
}
