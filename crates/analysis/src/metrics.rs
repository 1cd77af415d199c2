//! `skiffd --metrics-addr`: the Prometheus text exposition format (version 0.0.4). Engine
//! metrics carry dockerd's names where dockerd has them (`engine_daemon_*`); per-container
//! metrics carry cAdvisor's `container_*` names where they mean the same, so dashboards built
//! for cAdvisor work; what neither has (run-queue wait, the host's pressure) is `skiff_*`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use skiff_engine::Engine;
use skiff_engine::container::stats::Sample;

use crate::host::HostSample;

/// A label value as the format wants it (backslash, quote and newline escaped).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Metric families written in order, each with its HELP and TYPE once.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<String, (String, &'static str, Vec<String>)>,
    order: Vec<String>,
}

impl Exposition {
    /// Adds one sample of family `name`.
    pub fn add(&mut self, name: &str, kind: &'static str, help: &str, labels: &[(&str, &str)], value: f64) {
        if !self.families.contains_key(name) {
            self.order.push(name.to_string());
            self.families.insert(name.to_string(), (help.to_string(), kind, Vec::new()));
        }
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            format!("{{{}}}", l.join(","))
        };
        let value = if value.is_finite() { format!("{value}") } else { "NaN".to_string() };
        if let Some(f) = self.families.get_mut(name) {
            f.2.push(format!("{name}{labels} {value}"));
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for name in &self.order {
            let (help, kind, lines) = &self.families[name];
            let _ = writeln!(s, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
        }
        s
    }
}

/// One container's metrics.
pub fn container(x: &mut Exposition, id: &str, name: &str, image: &str, s: &Sample) {
    let l = [("id", format!("/skiff/{id}")), ("name", name.to_string()), ("image", image.to_string())];
    let base: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let st = &s.stats;
    let secs = |ns: u64| ns as f64 / 1e9;
    let c = "counter";
    let g = "gauge";
    x.add(
        "container_cpu_usage_seconds_total",
        c,
        "Cumulative cpu time consumed in seconds.",
        &base,
        secs(st.cpu_total_ns),
    );
    x.add(
        "container_cpu_user_seconds_total",
        c,
        "Cumulative user cpu time consumed in seconds.",
        &base,
        secs(st.cpu_user_ns),
    );
    x.add(
        "container_cpu_system_seconds_total",
        c,
        "Cumulative system cpu time consumed in seconds.",
        &base,
        secs(st.cpu_system_ns),
    );
    x.add(
        "container_cpu_cfs_periods_total",
        c,
        "Number of elapsed enforcement period intervals.",
        &base,
        st.cpu_periods as f64,
    );
    x.add(
        "container_cpu_cfs_throttled_periods_total",
        c,
        "Number of throttled period intervals.",
        &base,
        st.cpu_throttled_periods as f64,
    );
    x.add(
        "container_cpu_cfs_throttled_seconds_total",
        c,
        "Total time duration the container has been throttled.",
        &base,
        secs(st.cpu_throttled_ns),
    );
    if let Some((q, p)) = st.cpu_quota {
        x.add("container_spec_cpu_quota", g, "CPU quota of the container.", &base, q as f64);
        x.add("container_spec_cpu_period", g, "CPU period of the container.", &base, p as f64);
    }
    x.add(
        "skiff_container_runqueue_wait_seconds_total",
        c,
        "Time the container's threads waited on a run queue for a CPU.",
        &base,
        secs(s.sched.wait_ns),
    );
    x.add(
        "skiff_container_run_seconds_total",
        c,
        "Time the container's threads ran on a CPU (scheduler's count).",
        &base,
        secs(s.sched.run_ns),
    );
    memory(x, &base, s);
    io_and_pressure(x, &base, s);
}

/// A container's memory metrics.
fn memory(x: &mut Exposition, base: &[(&str, &str)], s: &Sample) {
    let st = &s.stats;
    let (c, g) = ("counter", "gauge");
    let stat = |k: &str| st.memory_stat.get(k).copied();
    x.add(
        "container_memory_usage_bytes",
        g,
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        base,
        st.memory_usage as f64,
    );
    let inactive = stat("total_inactive_file").or_else(|| stat("inactive_file")).unwrap_or(0);
    x.add(
        "container_memory_working_set_bytes",
        g,
        "Current working set in bytes.",
        base,
        st.memory_usage.saturating_sub(inactive) as f64,
    );
    if let Some(rss) = stat("total_rss").or_else(|| stat("anon")) {
        x.add("container_memory_rss", g, "Size of RSS in bytes.", base, rss as f64);
    }
    if let Some(cache) = stat("total_cache").or_else(|| stat("file")) {
        x.add("container_memory_cache", g, "Number of bytes of page cache memory.", base, cache as f64);
    }
    x.add("container_memory_failcnt", c, "Number of memory usage hits limits.", base, st.memory_failcnt as f64);
    if let Some(limit) = st.memory_limit.filter(|m| *m < 1 << 62) {
        x.add("container_spec_memory_limit_bytes", g, "Memory limit for the container.", base, limit as f64);
    }
    x.add(
        "container_oom_events_total",
        c,
        "Count of out of memory events observed for the container.",
        base,
        st.oom_kills as f64,
    );
    x.add("container_processes", g, "Number of processes running inside the container.", base, st.pids_current as f64);
}

/// A container's block I/O, network and pressure metrics.
fn io_and_pressure(x: &mut Exposition, base: &[(&str, &str)], s: &Sample) {
    let st = &s.stats;
    let c = "counter";
    for (op, family, help) in [
        ("read", "container_fs_reads_bytes_total", "Cumulative count of bytes read."),
        ("write", "container_fs_writes_bytes_total", "Cumulative count of bytes written."),
    ] {
        let mut by_dev: BTreeMap<String, u64> = BTreeMap::new();
        for e in st.blkio.iter().filter(|e| e.op.eq_ignore_ascii_case(op)) {
            *by_dev.entry(format!("{}:{}", e.major, e.minor)).or_default() += e.value;
        }
        for (dev, v) in by_dev {
            let mut labels = base.to_vec();
            labels.push(("device", &dev));
            x.add(family, c, help, &labels, v as f64);
        }
    }
    if let Some(nets) = &s.networks {
        let mut names: Vec<&String> = nets.keys().collect();
        names.sort();
        for iface in names {
            let n = &nets[iface];
            let mut labels = base.to_vec();
            labels.push(("interface", iface));
            x.add(
                "container_network_receive_bytes_total",
                c,
                "Cumulative count of bytes received.",
                &labels,
                n.rx_bytes.unwrap_or(0) as f64,
            );
            x.add(
                "container_network_transmit_bytes_total",
                c,
                "Cumulative count of bytes transmitted.",
                &labels,
                n.tx_bytes.unwrap_or(0) as f64,
            );
            x.add(
                "container_network_receive_packets_total",
                c,
                "Cumulative count of packets received.",
                &labels,
                n.rx_packets.unwrap_or(0) as f64,
            );
            x.add(
                "container_network_transmit_packets_total",
                c,
                "Cumulative count of packets transmitted.",
                &labels,
                n.tx_packets.unwrap_or(0) as f64,
            );
        }
    }
    if let Some(p) = st.psi {
        for (res, pr) in [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)] {
            x.add(
                &format!("container_pressure_{res}_waiting_seconds_total"),
                c,
                &format!("Total time duration tasks in the container have waited due to {res} congestion."),
                base,
                pr.some_total_us as f64 / 1e6,
            );
            x.add(
                &format!("container_pressure_{res}_stalled_seconds_total"),
                c,
                &format!("Total time duration no tasks in the container could make progress due to {res} congestion."),
                base,
                pr.full_total_us as f64 / 1e6,
            );
        }
    }
}

/// The host's metrics (skiff's own: what `skiff diagnose` reads).
pub fn host(x: &mut Exposition, h: &HostSample) {
    let tick = 0.01;
    for (mode, v) in [
        ("user", h.cpu.user),
        ("nice", h.cpu.nice),
        ("system", h.cpu.system),
        ("idle", h.cpu.idle),
        ("iowait", h.cpu.iowait),
        ("irq", h.cpu.irq),
        ("softirq", h.cpu.softirq),
        ("steal", h.cpu.steal),
    ] {
        x.add(
            "skiff_host_cpu_seconds_total",
            "counter",
            "Seconds the host's CPUs spent in each mode.",
            &[("mode", mode)],
            v as f64 * tick,
        );
    }
    x.add("skiff_host_procs_running", "gauge", "Runnable tasks on the host.", &[], h.procs_running as f64);
    x.add("skiff_host_load1", "gauge", "The host's one-minute load average.", &[], h.load1);
    x.add("skiff_host_memory_available_bytes", "gauge", "Memory available on the host.", &[], h.mem_available as f64);
    if let Some(p) = h.psi {
        for (res, pr) in [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)] {
            x.add(
                &format!("skiff_host_pressure_{res}_waiting_seconds_total"),
                "counter",
                &format!("Time some tasks on the host stalled on {res}."),
                &[],
                pr.some_total_us as f64 / 1e6,
            );
        }
    }
}

/// Everything, for one scrape.
pub fn scrape(engine: &Engine) -> String {
    let mut x = Exposition::default();
    let v = engine.version();
    let info = engine.info();
    x.add(
        "engine_daemon_engine_info",
        "gauge",
        "The information related to the engine and the OS it is running on",
        &[
            ("version", v.version.as_deref().unwrap_or("")),
            ("commit", v.git_commit.as_deref().unwrap_or("")),
            ("kernel", v.kernel_version.as_deref().unwrap_or("")),
            ("os", info.operating_system.as_deref().unwrap_or("")),
            ("architecture", info.architecture.as_deref().unwrap_or("")),
            ("daemon_id", info.id.as_deref().unwrap_or("")),
        ],
        1.0,
    );
    x.add(
        "engine_daemon_engine_cpus_cpus",
        "gauge",
        "The number of cpus that the host system of the engine has",
        &[],
        info.ncpu.unwrap_or(0) as f64,
    );
    x.add(
        "engine_daemon_engine_memory_bytes",
        "gauge",
        "The number of bytes of memory that the host system of the engine has",
        &[],
        info.mem_total.unwrap_or(0) as f64,
    );
    for (state, n) in [
        ("running", info.containers_running.unwrap_or(0)),
        ("paused", info.containers_paused.unwrap_or(0)),
        ("stopped", info.containers_stopped.unwrap_or(0)),
    ] {
        x.add(
            "engine_daemon_container_states_containers",
            "gauge",
            "The count of containers in various states",
            &[("state", state)],
            n as f64,
        );
    }
    host(&mut x, &HostSample::read());
    for c in engine.containers.all().into_iter().filter(|c| c.status().is_live()) {
        let (id, name, image) = c.with(|r| (r.id.clone(), r.name.clone(), r.config.image.clone().unwrap_or_default()));
        if let Ok(Some(s)) = engine.containers.sample(&id) {
            container(&mut x, &id, &name, &image, &s);
        }
    }
    x.render()
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: std::sync::Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let engine = engine.clone();
            async move {
                // Reading cgroups and /proc is blocking file I/O.
                let text = tokio::task::spawn_blocking(move || scrape(&engine)).await.unwrap_or_default();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_and_values_escaped() {
        let mut x = Exposition::default();
        x.add("a_total", "counter", "A help\nline.", &[("name", "we\"ird\\\n")], 1.5);
        x.add("b", "gauge", "B.", &[], f64::NAN);
        x.add("a_total", "counter", "A help\nline.", &[("name", "two")], 2.0);
        let t = x.render();
        assert_eq!(
            t,
            "# HELP a_total A help\\nline.\n# TYPE a_total counter\na_total{name=\"we\\\"ird\\\\\\n\"} 1.5\na_total{name=\"two\"} 2\n# HELP b B.\n# TYPE b gauge\nb NaN\n"
        );
    }

    #[test]
    fn a_host_reading_renders() {
        let mut x = Exposition::default();
        host(&mut x, &HostSample::read());
        let t = x.render();
        assert!(t.contains("# TYPE skiff_host_cpu_seconds_total counter"));
        assert!(t.lines().filter(|l| l.starts_with("skiff_host_cpu_seconds_total{mode=")).count() == 8);
    }
}
