//! The verdict of `skiff diagnose`: from what changed over a sampling window — the container's
//! cgroup (CPU used, CFS throttling against its quota, memory against its limit, reclaim, OOM
//! kills, pids), its threads' run-queue wait, the host's CPU time by kind, runnable tasks,
//! memory and pressure, and the other containers' CPU use — which of the two is it: the
//! container limited, or the host saturated (and by whom). A pure function: the thresholds are
//! the constants below, and docs/PERFORMANCE-ANALYSIS.md explains each.

use serde::{Deserialize, Serialize};

use crate::host::HostSample;

/// Throttled in at least this share of CFS periods: the quota limits the container.
pub const THROTTLED_SHARE: f64 = 0.20;
/// Fewer periods than this say nothing about throttling.
pub const MIN_PERIODS: u64 = 10;
/// The host's CPUs busy at least this share of the time…
pub const HOST_BUSY: f64 = 0.90;
/// …or this many runnable tasks per CPU on average: the host's CPUs are saturated.
pub const RUNQ_PER_CPU: f64 = 1.5;
/// The container's threads waited for a CPU at least this share of their demand: it suffers.
pub const WAIT_SHARE: f64 = 0.20;
/// Steal at least this share of CPU time: the hypervisor runs others on our CPUs.
pub const STEAL_SHARE: f64 = 0.10;
/// Memory use at least this share of the limit, with reclaim or OOM kills: the limit bites.
pub const MEMORY_NEAR_LIMIT: f64 = 0.90;
/// Less than this share of the host's memory available: the host is short of memory.
pub const HOST_MEMORY_AVAILABLE: f64 = 0.10;
/// A pressure (PSI `some`, 10 s average, percent) at least this high is saturation.
pub const PRESSURE: f64 = 10.0;
/// I/O wait at least this share of CPU time: the host's storage is the bottleneck.
pub const IOWAIT_SHARE: f64 = 0.20;
/// A neighbour using at least this many CPUs while the host is saturated is named.
pub const NEIGHBOUR_CPUS: f64 = 0.5;
/// Processes at least this share of the pids limit: the limit bites.
pub const PIDS_NEAR_LIMIT: f64 = 0.90;

/// What one container did over the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerWindow {
    pub id: String,
    pub name: String,
    /// CPU time used (cgroup), and its threads' run and run-queue wait time (scheduler).
    pub cpu_ns: u64,
    pub run_ns: u64,
    pub wait_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    /// `--cpus` as enforced.
    pub quota_cpus: Option<f64>,
    /// At the end of the window.
    pub memory_usage: u64,
    pub memory_limit: Option<u64>,
    /// Times the usage hit the limit (v1 `failcnt`, v2 `memory.events max`), pages scanned for
    /// reclaim (v2 `pgscan`), OOM kills: over the window.
    pub memory_limit_hits: u64,
    pub reclaim_scanned: u64,
    pub oom_kills: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// The cgroup's pressure at the end (cgroup v2 only): CPU, memory, I/O `some` avg10.
    pub pressure: Option<(f64, f64, f64)>,
}

/// Another container's CPU use over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub name: String,
    pub cpus: f64,
}

/// Everything the verdict is made from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    pub host_first: HostSample,
    pub host_last: HostSample,
    /// Mean runnable tasks over the window's readings (the reader itself not counted).
    pub runnable_mean: f64,
    pub container: ContainerWindow,
    pub neighbours: Vec<Neighbour>,
}

/// Which side a finding is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Container,
    Host,
    Neighbour,
    Neither,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub side: Side,
    /// `cpu`, `memory`, `pids`, `io`.
    pub resource: String,
    pub verdict: String,
}

/// The numbers the findings rest on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub container_cpus: f64,
    pub quota_cpus: Option<f64>,
    pub throttled_periods_percent: Option<f64>,
    pub throttled_seconds: f64,
    pub runqueue_wait_percent: Option<f64>,
    pub host_cpus: u32,
    pub host_busy_percent: f64,
    pub host_steal_percent: f64,
    pub host_iowait_percent: f64,
    pub runnable_per_cpu: f64,
    pub load1: f64,
    pub host_memory_available_percent: f64,
    pub host_pressure: Option<(f64, f64, f64)>,
    pub memory_usage: u64,
    pub memory_limit: Option<u64>,
    pub memory_percent_of_limit: Option<f64>,
    pub memory_limit_hits: u64,
    pub reclaim_scanned: u64,
    pub oom_kills: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    pub container_pressure: Option<(f64, f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub container: String,
    pub id: String,
    pub seconds: f64,
    pub findings: Vec<Finding>,
    pub evidence: Evidence,
    /// Where to dig next.
    pub next: Vec<String>,
}

impl Evidence {
    /// The share of its CPU demand the container's threads waited for a CPU, percent.
    fn waited(&self) -> f64 {
        self.runqueue_wait_percent.unwrap_or(0.0)
    }

    /// The host's CPUs are saturated: busy or queued past the thresholds.
    fn cpu_saturated(&self) -> bool {
        self.host_busy_percent >= 100.0 * HOST_BUSY || self.runnable_per_cpu >= RUNQ_PER_CPU
    }
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn mib(b: u64) -> String {
    let m = b as f64 / (1u64 << 20) as f64;
    if m >= 10.0 { format!("{m:.0} MiB") } else { format!("{m:.1} MiB") }
}

fn evidence(w: &Window) -> Evidence {
    let c = &w.container;
    let (h0, h1) = (&w.host_first.cpu, &w.host_last.cpu);
    let total = h1.total().saturating_sub(h0.total());
    let pct = |a: u64, b: u64| 100.0 * share(a.saturating_sub(b), total).unwrap_or(0.0);
    let secs = w.seconds.max(0.001);
    let host = &w.host_last;
    Evidence {
        container_cpus: c.cpu_ns as f64 / 1e9 / secs,
        quota_cpus: c.quota_cpus,
        throttled_periods_percent: (c.periods >= MIN_PERIODS)
            .then(|| 100.0 * c.throttled_periods as f64 / c.periods as f64),
        throttled_seconds: c.throttled_ns as f64 / 1e9,
        runqueue_wait_percent: share(c.wait_ns, c.wait_ns + c.run_ns).map(|s| 100.0 * s),
        host_cpus: host.ncpu,
        host_busy_percent: pct(h1.busy(), h0.busy()),
        host_steal_percent: pct(h1.steal, h0.steal),
        host_iowait_percent: pct(h1.iowait, h0.iowait),
        runnable_per_cpu: w.runnable_mean / f64::from(host.ncpu.max(1)),
        load1: host.load1,
        host_memory_available_percent: 100.0 * share(host.mem_available, host.mem_total).unwrap_or(1.0),
        host_pressure: host.psi.map(|p| (p.cpu.some_avg10, p.memory.some_avg10, p.io.some_avg10)),
        memory_usage: c.memory_usage,
        memory_limit: c.memory_limit,
        memory_percent_of_limit: c.memory_limit.and_then(|l| share(c.memory_usage, l)).map(|s| 100.0 * s),
        memory_limit_hits: c.memory_limit_hits,
        reclaim_scanned: c.reclaim_scanned,
        oom_kills: c.oom_kills,
        pids: c.pids,
        pids_limit: c.pids_limit,
        container_pressure: c.pressure,
    }
}

fn push(findings: &mut Vec<Finding>, side: Side, resource: &str, verdict: String) {
    findings.push(Finding { side, resource: resource.into(), verdict });
}

/// The container's own limits: quota, memory, pids.
fn container_findings(e: &Evidence, findings: &mut Vec<Finding>, next: &mut Vec<String>) {
    if let (Some(q), Some(t)) = (e.quota_cpus, e.throttled_periods_percent)
        && t >= 100.0 * THROTTLED_SHARE
    {
        push(
            findings,
            Side::Container,
            "cpu",
            format!(
                "container limited: CPU quota (throttled in {t:.0} % of periods, {q:.2} CPUs; it used {:.2})",
                e.container_cpus
            ),
        );
        next.push("raise the quota: docker update --cpus N CONTAINER (or make the work cheaper: perf top)".into());
    }
    let mem_pct = e.memory_percent_of_limit.unwrap_or(0.0);
    let reclaiming = e.memory_limit_hits > 0 || e.reclaim_scanned > 0;
    if let Some(limit) = e.memory_limit
        && (e.oom_kills > 0 || (mem_pct >= 100.0 * MEMORY_NEAR_LIMIT && reclaiming))
    {
        let what = if reclaiming { "reclaim" } else { "usage" };
        let kills = match e.oom_kills {
            0 => String::new(),
            1 => ", 1 OOM kill".into(),
            n => format!(", {n} OOM kills"),
        };
        push(
            findings,
            Side::Container,
            "memory",
            format!("memory limit: {what} at {mem_pct:.0} % of {}{kills}", mib(limit)),
        );
        next.push("raise the limit: docker update --memory N CONTAINER; see memory.stat (cache vs anon)".into());
    }
    if let Some(limit) = e.pids_limit
        && limit > 0
        && e.pids as f64 >= PIDS_NEAR_LIMIT * limit as f64
    {
        push(findings, Side::Container, "pids", format!("container limited: pids ({} of {limit})", e.pids));
        next.push("raise --pids-limit, or find what forks: docker top CONTAINER".into());
    }
}

/// The host: CPU (and who on it), steal, memory, I/O.
fn host_findings(w: &Window, e: &Evidence, findings: &mut Vec<Finding>, next: &mut Vec<String>) {
    let waited = e.waited();
    if e.cpu_saturated() && waited >= 100.0 * WAIT_SHARE {
        push(
            findings,
            Side::Host,
            "cpu",
            format!(
                "host saturated: CPU (run queue {:.1} per CPU, {:.0} % busy; the container waited {waited:.0} % of its runtime)",
                e.runnable_per_cpu, e.host_busy_percent
            ),
        );
        next.push("who runs: skiff top, then pidstat 1 / mpstat -P ALL 1 on the host; perf sched latency".into());
        let mut busy: Vec<&Neighbour> = w.neighbours.iter().filter(|n| n.cpus >= NEIGHBOUR_CPUS).collect();
        busy.sort_by(|a, b| b.cpus.total_cmp(&a.cpus));
        for n in busy.into_iter().take(3) {
            push(findings, Side::Neighbour, "cpu", format!("neighbour: container {} uses {:.1} CPUs", n.name, n.cpus));
        }
    }
    if e.host_steal_percent >= 100.0 * STEAL_SHARE {
        push(
            findings,
            Side::Host,
            "cpu",
            format!("host: CPU steal {:.0} % (the hypervisor runs others on these CPUs)", e.host_steal_percent),
        );
    }
    let mem_pressure = e.host_pressure.map_or(0.0, |p| p.1);
    if e.host_memory_available_percent < 100.0 * HOST_MEMORY_AVAILABLE || mem_pressure >= PRESSURE {
        push(
            findings,
            Side::Host,
            "memory",
            format!(
                "host saturated: memory ({:.0} % available, pressure {mem_pressure:.0} %)",
                e.host_memory_available_percent
            ),
        );
        next.push("what holds memory: skiff top (sort by memory), then slabtop / smem on the host".into());
    }
    let io_pressure = e.host_pressure.map_or(0.0, |p| p.2);
    if io_pressure >= PRESSURE || e.host_iowait_percent >= 100.0 * IOWAIT_SHARE {
        push(
            findings,
            Side::Host,
            "io",
            format!(
                "host saturated: I/O (pressure {io_pressure:.0} %, iowait {:.0} % of CPU time)",
                e.host_iowait_percent
            ),
        );
        next.push("which disk and who: iostat -x 1, then biotop / pidstat -d 1".into());
    }
}

/// The findings, most specific first; "neither" when nothing is limited or saturated.
pub fn diagnose(w: &Window) -> Report {
    let e = evidence(w);
    let mut findings = Vec::new();
    let mut next = Vec::new();
    container_findings(&e, &mut findings, &mut next);
    host_findings(w, &e, &mut findings, &mut next);
    let waited = e.waited();
    if findings.is_empty() {
        let verdict = if e.cpu_saturated() {
            format!(
                "neither: the host's CPUs are saturated (run queue {:.1} per CPU, {:.0} % busy) but the container gets the CPU it asks for (it used {:.2} CPUs, waited {waited:.0} % for one)",
                e.runnable_per_cpu, e.host_busy_percent, e.container_cpus
            )
        } else {
            format!(
                "neither: the container is not limited and the host is not saturated (it used {:.2} CPUs, waited {waited:.0} % for one; host {:.0} % busy)",
                e.container_cpus, e.host_busy_percent
            )
        };
        push(&mut findings, Side::Neither, "", verdict);
        next.push("look inside the application: perf record -g -p PID, strace -c -p PID, its own metrics".into());
    }
    Report {
        container: w.container.name.clone(),
        id: w.container.id.clone(),
        seconds: w.seconds,
        findings,
        evidence: e,
        next,
    }
}

/// The report as text: the verdicts, then the evidence under them, then where to dig.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let e = &r.evidence;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({}), sampled for {:.1} s:", r.container, &r.id[..r.id.len().min(12)], r.seconds);
    for f in &r.findings {
        let _ = writeln!(s, "  {}", f.verdict);
    }
    let _ = writeln!(s, "\nevidence:");
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.1}{unit}"));
    let _ = writeln!(
        s,
        "  container: {:.2} CPUs used (quota {}), throttled in {} of periods ({:.2} s), waited {} for a CPU",
        e.container_cpus,
        opt(e.quota_cpus, ""),
        opt(e.throttled_periods_percent, " %"),
        e.throttled_seconds,
        opt(e.runqueue_wait_percent, " %")
    );
    let limit = e.memory_limit.map_or("none".to_string(), mib);
    let _ = writeln!(
        s,
        "  memory: {} of {limit} ({}), limit hit {} times, {} pages scanned, {} OOM kills; pids {}{}",
        mib(e.memory_usage),
        opt(e.memory_percent_of_limit, " %"),
        e.memory_limit_hits,
        e.reclaim_scanned,
        e.oom_kills,
        e.pids,
        e.pids_limit.map(|l| format!(" of {l}")).unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  host: {} CPUs {:.0} % busy (steal {:.0} %, iowait {:.0} %), run queue {:.1} per CPU, load {:.2}, memory {:.0} % available",
        e.host_cpus,
        e.host_busy_percent,
        e.host_steal_percent,
        e.host_iowait_percent,
        e.runnable_per_cpu,
        e.load1,
        e.host_memory_available_percent
    );
    if let Some((c, m, i)) = e.host_pressure {
        let _ = writeln!(s, "  host pressure (some, 10 s): cpu {c:.1} %, memory {m:.1} %, io {i:.1} %");
    }
    if let Some((c, m, i)) = e.container_pressure {
        let _ = writeln!(s, "  container pressure (some, 10 s): cpu {c:.1} %, memory {m:.1} %, io {i:.1} %");
    }
    let _ = writeln!(s, "\nnext:");
    for n in &r.next {
        let _ = writeln!(s, "  {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::CpuTimes;

    fn host(busy: u64, idle: u64, ncpu: u32) -> HostSample {
        HostSample {
            cpu: CpuTimes { user: busy, idle, ..Default::default() },
            ncpu,
            mem_total: 1000,
            mem_available: 800,
            ..Default::default()
        }
    }

    fn window(c: ContainerWindow, busy_share: f64, runnable: f64) -> Window {
        let total = 1000u64;
        let busy = (busy_share * total as f64) as u64;
        Window {
            seconds: 10.0,
            host_first: host(0, 0, 2),
            host_last: host(busy, total - busy, 2),
            runnable_mean: runnable,
            container: ContainerWindow { id: "abc".into(), name: "app".into(), ..c },
            neighbours: vec![
                Neighbour { name: "hog".into(), cpus: 1.8 },
                Neighbour { name: "idle".into(), cpus: 0.01 },
            ],
        }
    }

    #[test]
    fn a_quota_that_throttles_is_the_containers_limit() {
        let c = ContainerWindow {
            cpu_ns: 2_000_000_000,
            run_ns: 2_000_000_000,
            wait_ns: 10_000_000,
            periods: 100,
            throttled_periods: 87,
            throttled_ns: 7_000_000_000,
            quota_cpus: Some(0.2),
            ..Default::default()
        };
        let r = diagnose(&window(c, 0.2, 0.5));
        assert_eq!(r.findings.len(), 1, "{r:?}");
        assert_eq!(r.findings[0].side, Side::Container);
        assert_eq!(
            r.findings[0].verdict,
            "container limited: CPU quota (throttled in 87 % of periods, 0.20 CPUs; it used 0.20)"
        );
        assert!(render(&r).contains("throttled in 87.0 % of periods"));
    }

    #[test]
    fn a_saturated_host_names_the_wait_and_the_neighbours() {
        let c = ContainerWindow {
            cpu_ns: 5_000_000_000,
            run_ns: 5_000_000_000,
            wait_ns: 4_000_000_000,
            ..Default::default()
        };
        let r = diagnose(&window(c, 0.99, 6.2));
        let v: Vec<&str> = r.findings.iter().map(|f| f.verdict.as_str()).collect();
        assert_eq!(
            v[0],
            "host saturated: CPU (run queue 3.1 per CPU, 99 % busy; the container waited 44 % of its runtime)"
        );
        assert_eq!(v[1], "neighbour: container hog uses 1.8 CPUs");
        assert_eq!(v.len(), 2, "an idle neighbour is not named: {v:?}");
        // A busy host on which the container does not wait is not its problem.
        let calm = ContainerWindow { run_ns: 5_000_000_000, wait_ns: 10_000_000, ..Default::default() };
        let r = diagnose(&window(calm, 0.99, 6.2));
        assert_eq!(r.findings[0].side, Side::Neither);
        assert!(r.findings[0].verdict.contains("gets the CPU it asks for"), "{r:?}");
    }

    #[test]
    fn memory_at_the_limit_with_reclaim_or_kills_is_the_limit() {
        let c = ContainerWindow {
            memory_usage: 63 << 20,
            memory_limit: Some(64 << 20),
            memory_limit_hits: 40,
            oom_kills: 3,
            ..Default::default()
        };
        let r = diagnose(&window(c.clone(), 0.1, 0.2));
        assert_eq!(r.findings[0].verdict, "memory limit: reclaim at 98 % of 64 MiB, 3 OOM kills");
        // Near the limit with nothing reclaimed yet: not a finding.
        let quiet = ContainerWindow { memory_limit_hits: 0, oom_kills: 0, ..c };
        assert_eq!(diagnose(&window(quiet, 0.1, 0.2)).findings[0].side, Side::Neither);
    }

    #[test]
    fn host_memory_io_steal_and_pids() {
        let mut w = window(ContainerWindow { pids: 95, pids_limit: Some(100), ..Default::default() }, 0.3, 0.3);
        w.host_last.mem_available = 50;
        w.host_last.cpu.steal = 200;
        w.host_last.cpu.iowait = 300;
        let v: Vec<String> = diagnose(&w).findings.into_iter().map(|f| f.verdict).collect();
        assert!(v.contains(&"container limited: pids (95 of 100)".to_string()), "{v:?}");
        assert!(v.iter().any(|f| f.starts_with("host: CPU steal")), "{v:?}");
        assert!(v.iter().any(|f| f.starts_with("host saturated: memory (5 % available")), "{v:?}");
        assert!(v.iter().any(|f| f.starts_with("host saturated: I/O")), "{v:?}");
    }

    #[test]
    fn an_empty_window_is_neither_and_never_divides_by_zero() {
        let r = diagnose(&Window::default());
        assert_eq!(r.findings[0].side, Side::Neither);
        assert!(r.evidence.container_cpus.is_finite());
        assert!(!render(&r).is_empty());
    }
}
