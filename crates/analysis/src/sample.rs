//! Readings over time, through the engine: a diagnosis window (one container, the host, the
//! other containers) and `skiff top`'s rows (every running container and the host, over an
//! interval).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use skiff_engine::container::Containers;
use skiff_engine::container::stats::Sample;
use skiff_engine::{Engine, EngineError};

use crate::host::HostSample;
use crate::verdict::{ContainerWindow, Neighbour, Window};

/// How often the run queue is read during a window.
const STEP: Duration = Duration::from_millis(500);

/// The running containers: ID, name, image.
fn running(engine: &Engine) -> Vec<(String, String, String)> {
    engine
        .containers
        .all()
        .into_iter()
        .filter(|c| c.status().is_live())
        .map(|c| c.with(|r| (r.id.clone(), r.name.clone(), r.config.image.clone().unwrap_or_default())))
        .collect()
}

fn samples(engine: &Engine, ids: &[(String, String, String)]) -> HashMap<String, Sample> {
    ids.iter().filter_map(|(id, _, _)| Some((id.clone(), engine.containers.sample(id).ok()??))).collect()
}

/// Samples container `key` and the host for `seconds` and says what changed.
pub async fn window(engine: &Engine, key: &str, seconds: f64) -> Result<Window, EngineError> {
    let c = engine.containers.get(key)?;
    let (id, name) = c.with(|r| (r.id.clone(), r.name.clone()));
    let not_running = || EngineError::conflict(format!("Container {id} is not running"));
    let others = running(engine);
    let host_first = HostSample::read();
    let first = engine.containers.sample(&id)?.ok_or_else(not_running)?;
    let others_first = samples(engine, &others);
    let start = Instant::now();
    let mut runnable = Vec::new();
    let wanted = Duration::from_secs_f64(seconds.clamp(0.5, 600.0));
    while start.elapsed() < wanted {
        tokio::time::sleep(STEP.min(wanted.saturating_sub(start.elapsed())).max(Duration::from_millis(10))).await;
        // The reader itself is runnable while it reads.
        runnable.push(HostSample::read().procs_running.saturating_sub(1) as f64);
    }
    let host_last = HostSample::read();
    let last = engine.containers.sample(&id)?.ok_or_else(not_running)?;
    let others_last = samples(engine, &others);
    let secs = start.elapsed().as_secs_f64();
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let (f, l) = (&first.stats, &last.stats);
    let (run_ns, wait_ns) = last.run_and_wait_since(Some(&first));
    let container = ContainerWindow {
        id: id.clone(),
        name,
        cpu_ns: d(l.cpu_total_ns, f.cpu_total_ns),
        run_ns,
        wait_ns,
        periods: d(l.cpu_periods, f.cpu_periods),
        throttled_periods: d(l.cpu_throttled_periods, f.cpu_throttled_periods),
        throttled_ns: d(l.cpu_throttled_ns, f.cpu_throttled_ns),
        quota_cpus: l.cpu_quota.map(|(q, p)| q as f64 / p.max(1) as f64),
        memory_usage: l.memory_usage,
        memory_limit: l.memory_limit.filter(|m| *m < 1 << 62),
        memory_limit_hits: d(l.memory_failcnt, f.memory_failcnt),
        reclaim_scanned: d(
            l.memory_stat.get("pgscan").copied().unwrap_or(0),
            f.memory_stat.get("pgscan").copied().unwrap_or(0),
        ),
        oom_kills: d(l.oom_kills, f.oom_kills),
        pids: l.pids_current,
        pids_limit: l.pids_limit,
        pressure: l.psi.map(|p| (p.cpu.some_avg10, p.memory.some_avg10, p.io.some_avg10)),
    };
    let neighbours = others
        .iter()
        .filter(|(oid, _, _)| *oid != id)
        .filter_map(|(oid, oname, _)| {
            let (a, b) = (others_first.get(oid)?, others_last.get(oid)?);
            let cpus = d(b.stats.cpu_total_ns, a.stats.cpu_total_ns) as f64 / 1e9 / secs.max(0.001);
            Some(Neighbour { name: oname.clone(), cpus })
        })
        .collect();
    let runnable_mean = if runnable.is_empty() { 0.0 } else { runnable.iter().sum::<f64>() / runnable.len() as f64 };
    Ok(Window { seconds: secs, host_first, host_last, runnable_mean, container, neighbours })
}

/// The host's line of `skiff top`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostRow {
    pub cpus: u32,
    pub cpu_busy_percent: f64,
    pub cpu_steal_percent: f64,
    pub cpu_iowait_percent: f64,
    pub load1: f64,
    pub runnable: u64,
    pub memory_total: u64,
    pub memory_available: u64,
    /// `some` 10 s averages, percent: CPU, memory, I/O.
    pub pressure: Option<(f64, f64, f64)>,
}

/// One container's line of `skiff top`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopRow {
    pub id: String,
    pub name: String,
    pub image: String,
    /// CPUs used over the interval.
    pub cpus: f64,
    /// Of the host's CPUs, and of the container's quota (or of the host when it has none).
    pub cpu_percent_of_host: f64,
    pub cpu_percent_of_limit: f64,
    pub cpu_quota_cpus: Option<f64>,
    pub throttled_percent: Option<f64>,
    pub runqueue_wait_percent: Option<f64>,
    pub memory_usage: u64,
    pub memory_limit: Option<u64>,
    pub memory_percent_of_limit: Option<f64>,
    /// Reclaim over the interval: times the limit was hit (and pages scanned, cgroup v2).
    pub memory_limit_hits: u64,
    pub oom_kills: u64,
    /// The cgroup's `some` 10 s pressure averages (cgroup v2): CPU, memory, I/O.
    pub pressure: Option<(f64, f64, f64)>,
    pub io_read_bytes_per_s: f64,
    pub io_write_bytes_per_s: f64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    pub pids: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopSnapshot {
    pub interval_seconds: f64,
    pub host: HostRow,
    pub containers: Vec<TopRow>,
}

fn io_bytes(s: &Sample, op: &str) -> u64 {
    s.stats.blkio.iter().filter(|e| e.op.eq_ignore_ascii_case(op)).map(|e| e.value).sum()
}

fn net_bytes(s: &Sample) -> (u64, u64) {
    s.networks.as_ref().map_or((0, 0), |n| {
        n.values().fold((0, 0), |(r, t), x| (r + x.rx_bytes.unwrap_or(0), t + x.tx_bytes.unwrap_or(0)))
    })
}

/// Every running container and the host, over `interval`.
pub async fn top(engine: &Engine, interval: Duration) -> TopSnapshot {
    let ids = running(engine);
    let h0 = HostSample::read();
    let first = samples(engine, &ids);
    let start = Instant::now();
    tokio::time::sleep(interval).await;
    let h1 = HostSample::read();
    let last = samples(engine, &ids);
    let secs = start.elapsed().as_secs_f64().max(0.001);
    let total = h1.cpu.total().saturating_sub(h0.cpu.total()).max(1) as f64;
    let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total;
    let host = HostRow {
        cpus: h1.ncpu,
        cpu_busy_percent: pct(h1.cpu.busy(), h0.cpu.busy()),
        cpu_steal_percent: pct(h1.cpu.steal, h0.cpu.steal),
        cpu_iowait_percent: pct(h1.cpu.iowait, h0.cpu.iowait),
        load1: h1.load1,
        runnable: h1.procs_running.saturating_sub(1),
        memory_total: h1.mem_total,
        memory_available: h1.mem_available,
        pressure: h1.psi.map(|p| (p.cpu.some_avg10, p.memory.some_avg10, p.io.some_avg10)),
    };
    let mut containers = Vec::new();
    for (id, name, image) in ids {
        let (Some(a), Some(b)) = (first.get(&id), last.get(&id)) else { continue };
        containers.push(row(id, name, image, a, b, secs, h1.ncpu));
    }
    containers.sort_by(|a, b| b.cpus.total_cmp(&a.cpus).then_with(|| a.name.cmp(&b.name)));
    TopSnapshot { interval_seconds: secs, host, containers }
}

fn row(id: String, name: String, image: String, a: &Sample, b: &Sample, secs: f64, ncpu: u32) -> TopRow {
    let d = |x: u64, y: u64| x.saturating_sub(y);
    let cpus = d(b.stats.cpu_total_ns, a.stats.cpu_total_ns) as f64 / 1e9 / secs;
    // Run-queue wait, throttling, quota, OOM kills and pressure as the stats API reports them.
    let k = Containers::skiff_stats(b, Some(a));
    let share = |part: u64, whole: u64| (whole > 0).then(|| 100.0 * part as f64 / whole as f64);
    let limit = b.stats.memory_limit.filter(|m| *m < 1 << 62);
    let (rx0, tx0) = net_bytes(a);
    let (rx1, tx1) = net_bytes(b);
    let rate = |x: u64, y: u64| d(x, y) as f64 / secs;
    TopRow {
        id,
        name,
        image,
        cpus,
        cpu_percent_of_host: 100.0 * cpus / f64::from(ncpu.max(1)),
        cpu_percent_of_limit: 100.0 * cpus / k.cpu_quota_cpus.unwrap_or(f64::from(ncpu.max(1))),
        cpu_quota_cpus: k.cpu_quota_cpus,
        throttled_percent: k.throttled_periods_percent,
        runqueue_wait_percent: k.runqueue_wait_percent,
        memory_usage: b.stats.memory_usage,
        memory_limit: limit,
        memory_percent_of_limit: limit.and_then(|l| share(b.stats.memory_usage, l)),
        memory_limit_hits: d(b.stats.memory_failcnt, a.stats.memory_failcnt),
        oom_kills: k.oom_kills,
        pressure: k.pressure.map(|p| (p.cpu_some_avg10, p.memory_some_avg10, p.io_some_avg10)),
        io_read_bytes_per_s: rate(io_bytes(b, "read"), io_bytes(a, "read")),
        io_write_bytes_per_s: rate(io_bytes(b, "write"), io_bytes(a, "write")),
        net_rx_bytes_per_s: rate(rx1, rx0),
        net_tx_bytes_per_s: rate(tx1, tx0),
        pids: b.stats.pids_current,
    }
}
