//! `skiff top` (no container: the live view of every container and the host) and `skiff
//! diagnose CONTAINER`: "is it the host or the container?", from skiffd's `/skiff/*` endpoints.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::client::{Client, query};

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    pub container: String,
    /// How long to sample the container and the host
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Output format: text (default) or json
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn diagnose(c: &Client, a: DiagnoseArgs) -> anyhow::Result<u8> {
    let path = format!("/skiff/containers/{}/diagnose{}", a.container, query(&[("seconds", a.seconds.to_string())]));
    let mut report: Value = c.get_json(&path).await?;
    match a.format.as_deref() {
        Some("json") => {
            if let Some(o) = report.as_object_mut() {
                o.remove("text");
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        None | Some("text") => print!("{}", report["text"].as_str().unwrap_or_default()),
        Some(f) => anyhow::bail!("unknown format {f:?}: text or json"),
    }
    Ok(0)
}

/// What the live view sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Cpu,
    Memory,
    Wait,
    Throttled,
    Name,
}

impl SortKey {
    pub fn parse(s: &str) -> anyhow::Result<SortKey> {
        Ok(match s {
            "cpu" => SortKey::Cpu,
            "memory" | "mem" => SortKey::Memory,
            "wait" | "runqueue" => SortKey::Wait,
            "throttled" | "throttle" => SortKey::Throttled,
            "name" => SortKey::Name,
            _ => anyhow::bail!("unknown sort key {s:?}: cpu, memory, wait, throttled or name"),
        })
    }

    pub fn next(self) -> SortKey {
        match self {
            SortKey::Cpu => SortKey::Memory,
            SortKey::Memory => SortKey::Wait,
            SortKey::Wait => SortKey::Throttled,
            SortKey::Throttled => SortKey::Name,
            SortKey::Name => SortKey::Cpu,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::Memory => "memory",
            SortKey::Wait => "run-queue wait",
            SortKey::Throttled => "throttled",
            SortKey::Name => "name",
        }
    }
}

/// Sorts and filters a snapshot's rows.
pub fn arrange(rows: &mut Vec<Value>, sort: SortKey, filter: &str) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    if !filter.is_empty() {
        rows.retain(|r| {
            r["name"].as_str().unwrap_or_default().contains(filter)
                || r["image"].as_str().unwrap_or_default().contains(filter)
                || r["id"].as_str().unwrap_or_default().starts_with(filter)
        });
    }
    match sort {
        SortKey::Cpu => rows.sort_by(|a, b| f(b, "cpus").total_cmp(&f(a, "cpus"))),
        SortKey::Memory => rows.sort_by(|a, b| f(b, "memory_usage").total_cmp(&f(a, "memory_usage"))),
        SortKey::Wait => rows.sort_by(|a, b| f(b, "runqueue_wait_percent").total_cmp(&f(a, "runqueue_wait_percent"))),
        SortKey::Throttled => rows.sort_by(|a, b| f(b, "throttled_percent").total_cmp(&f(a, "throttled_percent"))),
        SortKey::Name => rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str())),
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (v, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0}{}", UNITS[u]) } else { format!("{v:.1}{}", UNITS[u]) }
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |p| format!("{p:.0}%"))
}

/// The host's line.
pub fn host_line(h: &Value) -> String {
    let used = h["memory_total"].as_f64().unwrap_or(0.0) - h["memory_available"].as_f64().unwrap_or(0.0);
    let psi = match h["pressure"].as_array() {
        Some(p) if p.len() == 3 => format!(
            "  psi cpu {:.0}% mem {:.0}% io {:.0}%",
            p[0].as_f64().unwrap_or(0.0),
            p[1].as_f64().unwrap_or(0.0),
            p[2].as_f64().unwrap_or(0.0)
        ),
        _ => String::new(),
    };
    format!(
        "host: {} CPUs {:.0}% busy (steal {:.0}%, iowait {:.0}%)  runnable {}  load {:.2}  mem {} / {}{psi}",
        h["cpus"],
        h["cpu_busy_percent"].as_f64().unwrap_or(0.0),
        h["cpu_steal_percent"].as_f64().unwrap_or(0.0),
        h["cpu_iowait_percent"].as_f64().unwrap_or(0.0),
        h["runnable"],
        h["load1"].as_f64().unwrap_or(0.0),
        bytes(used),
        bytes(h["memory_total"].as_f64().unwrap_or(0.0)),
    )
}

pub const COLUMNS: [&str; 12] = [
    "NAME",
    "CPU%HOST",
    "CPU%LIM",
    "THROTTLED",
    "RQ WAIT",
    "MEM",
    "MEM%LIM",
    "RECLAIM",
    "OOM",
    "IO R/W /s",
    "NET RX/TX /s",
    "PIDS",
];

/// One container's cells, in [`COLUMNS`]' order.
pub fn cells(r: &Value) -> Vec<String> {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    vec![
        r["name"].as_str().unwrap_or_default().to_string(),
        format!("{:.1}%", f("cpu_percent_of_host")),
        format!("{:.1}%", f("cpu_percent_of_limit")),
        pct(&r["throttled_percent"]),
        pct(&r["runqueue_wait_percent"]),
        bytes(f("memory_usage")),
        pct(&r["memory_percent_of_limit"]),
        r["memory_limit_hits"].to_string(),
        r["oom_kills"].to_string(),
        format!("{}/{}", bytes(f("io_read_bytes_per_s")), bytes(f("io_write_bytes_per_s"))),
        format!("{}/{}", bytes(f("net_rx_bytes_per_s")), bytes(f("net_tx_bytes_per_s"))),
        r["pids"].to_string(),
    ]
}

async fn snapshot(c: &Client, interval: f64) -> anyhow::Result<Value> {
    c.get_json(&format!("/skiff/top{}", query(&[("interval", interval.to_string())]))).await
}

/// `skiff top --once`: one snapshot, as a table or JSON.
pub async fn once(c: &Client, interval: f64, format: Option<&str>, sort: SortKey) -> anyhow::Result<u8> {
    let mut snap = snapshot(c, interval).await?;
    let mut rows = snap["containers"].as_array().cloned().unwrap_or_default();
    arrange(&mut rows, sort, "");
    match format {
        Some("json") => {
            snap["containers"] = Value::Array(rows);
            println!("{}", serde_json::to_string_pretty(&snap)?);
        }
        None | Some("table") => {
            println!("{}", host_line(&snap["host"]));
            let mut table = vec![COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            table.extend(rows.iter().map(cells));
            let widths: Vec<usize> =
                (0..COLUMNS.len()).map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
            let mut out = std::io::stdout().lock();
            for r in table {
                let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
        }
        Some(f) => anyhow::bail!("unknown format {f:?}: table or json"),
    }
    Ok(0)
}

/// The live view: a full-screen table refreshed every `interval`.
pub async fn live(c: &Client, interval: f64, sort: SortKey) -> anyhow::Result<u8> {
    crate::commands::top_view::run(c.clone(), Duration::from_secs_f64(interval), sort).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_filter_and_render() {
        let mut rows = vec![
            serde_json::json!({"id": "a1", "name": "web", "image": "nginx", "cpus": 0.2, "memory_usage": 10, "throttled_percent": 87.0}),
            serde_json::json!({"id": "b2", "name": "db", "image": "postgres", "cpus": 1.5, "memory_usage": 99, "runqueue_wait_percent": 40.0}),
        ];
        arrange(&mut rows, SortKey::Cpu, "");
        assert_eq!(rows[0]["name"], "db");
        arrange(&mut rows, SortKey::Throttled, "");
        assert_eq!(rows[0]["name"], "web");
        arrange(&mut rows, SortKey::Name, "");
        assert_eq!(rows[0]["name"], "db");
        arrange(&mut rows, SortKey::Cpu, "ngi");
        assert_eq!(rows.len(), 1);
        let c = cells(&rows[0]);
        assert_eq!((c[0].as_str(), c[3].as_str(), c[4].as_str()), ("web", "87%", "-"));
        assert_eq!(bytes(1536.0), "1.5KiB");
        assert!(SortKey::parse("nope").is_err());
        assert_eq!(SortKey::Name.next(), SortKey::Cpu);
        let h = serde_json::json!({"cpus": 2, "cpu_busy_percent": 50.0, "memory_total": 2048.0, "memory_available": 1024.0, "pressure": [1.0, 2.0, 3.0]});
        assert!(host_line(&h).contains("2 CPUs 50% busy") && host_line(&h).contains("psi cpu 1% mem 2% io 3%"));
    }
}
