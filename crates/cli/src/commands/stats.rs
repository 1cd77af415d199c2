//! `skiff top` (a container's processes) and `skiff stats` (its resource use, live or once).

use bollard_stubs::models::{ContainerSummary, ContainerTopResponse};
use std::io::Write;

use clap::Args;
use serde_json::{Value, json};

use super::container::short;
use super::error_text;
use crate::client::{Client, query};
use crate::format;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// A container: its processes (as docker top). None: the live view of every container
    /// and the host (CPU of host and of limit, throttling, run-queue wait, memory, reclaim).
    pub container: Option<String>,
    /// ps options (ignored: the default -ef columns are shown)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
    /// Live view: print one snapshot and exit
    #[arg(long)]
    pub once: bool,
    /// Live view with --once: table (default) or json
    #[arg(long)]
    pub format: Option<String>,
    /// Live view: seconds between readings
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Live view: sort by cpu, memory, wait, throttled or name
    #[arg(long, default_value = "cpu")]
    pub sort: String,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

pub async fn top(c: &Client, a: TopArgs) -> anyhow::Result<u8> {
    let Some(container) = a.container else {
        let sort = super::analysis::SortKey::parse(&a.sort)?;
        if !(0.1..=60.0).contains(&a.interval) {
            anyhow::bail!("--interval must be between 0.1 and 60 seconds");
        }
        return if a.once || a.format.is_some() {
            super::analysis::once(c, a.interval, a.format.as_deref(), sort).await
        } else {
            super::analysis::live(c, a.interval, sort).await
        };
    };
    let t: ContainerTopResponse = c.get_json(&format!("/containers/{container}/top")).await?;
    let mut rows = vec![t.titles.unwrap_or_default()];
    rows.extend(t.processes.unwrap_or_default());
    // docker top uses a wider table (tabwriter minwidth 20).
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len() + 4).max(20);
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.len()));
            }
        }
        println!("{line}");
    }
    Ok(0)
}

fn stats_row(v: &Value, name: &str, no_trunc: bool) -> Value {
    let cpu_total = v.pointer("/cpu_stats/cpu_usage/total_usage").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let pre_total = v.pointer("/precpu_stats/cpu_usage/total_usage").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let sys = v.pointer("/cpu_stats/system_cpu_usage").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let pre_sys = v.pointer("/precpu_stats/system_cpu_usage").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let ncpu = v.pointer("/cpu_stats/online_cpus").and_then(|x| x.as_f64()).unwrap_or(1.0);
    let cpu = if sys > pre_sys && cpu_total > pre_total {
        (cpu_total - pre_total) / (sys - pre_sys) * ncpu * 100.0
    } else {
        0.0
    };
    let usage = v.pointer("/memory_stats/usage").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let inactive = v
        .pointer("/memory_stats/stats/total_inactive_file")
        .or_else(|| v.pointer("/memory_stats/stats/inactive_file"))
        .and_then(|x| x.as_f64())
        .unwrap_or(0.0);
    let mem = if inactive < usage { usage - inactive } else { usage };
    let limit = v.pointer("/memory_stats/limit").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let (mut rd, mut wr) = (0.0, 0.0);
    if let Some(list) = v.pointer("/blkio_stats/io_service_bytes_recursive").and_then(|x| x.as_array()) {
        for e in list {
            let val = e.get("value").and_then(|x| x.as_f64()).unwrap_or(0.0);
            match e.get("op").and_then(|x| x.as_str()).map(|s| s.to_ascii_lowercase()) {
                Some(op) if op == "read" => rd += val,
                Some(op) if op == "write" => wr += val,
                _ => {}
            }
        }
    }
    let id = v.get("id").and_then(|x| x.as_str()).unwrap_or("");
    json!({
        "ID": if no_trunc { id.to_string() } else { short(id) },
        "Container": name,
        "Name": v.get("name").and_then(|x| x.as_str()).unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::bytes_size(mem), format::bytes_size(limit)),
        "MemPerc": format!("{:.2}%", if limit > 0.0 { mem / limit * 100.0 } else { 0.0 }),
        "NetIO": "0B / 0B",
        "BlockIO": format!("{} / {}", format::human_size(rd), format::human_size(wr)),
        "PIDs": v.pointer("/pids_stats/current").and_then(|x| x.as_u64()).unwrap_or(0).to_string(),
    })
}

pub async fn stats(c: &Client, a: StatsArgs) -> anyhow::Result<u8> {
    let names: Vec<String> = if a.containers.is_empty() {
        let list: Vec<ContainerSummary> =
            c.get_json(&format!("/containers/json{}", query(&[("all", a.all.to_string())]))).await?;
        list.iter().filter_map(|s| s.id.clone()).collect()
    } else {
        a.containers.clone()
    };
    let default =
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ];
    loop {
        let mut futs = Vec::new();
        for n in &names {
            let c = c.clone();
            let n = n.clone();
            futs.push(tokio::spawn(async move {
                let v: anyhow::Result<Value> = c.get_json(&format!("/containers/{n}/stats?stream=0")).await;
                (n, v)
            }));
        }
        let mut rows = Vec::new();
        for f in futs {
            let (n, v) = f.await?;
            match v {
                Ok(v) => rows.push(stats_row(&v, &n, a.no_trunc)),
                Err(e) => {
                    eprintln!("{}", error_text(&e));
                    return Ok(1);
                }
            }
        }
        let out = format::render_list(&rows, a.format.as_deref(), default, &headers)
            .map_err(|e| anyhow::anyhow!("template: {e}"))?;
        if !a.no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        std::io::stdout().flush()?;
        if a.no_stream {
            return Ok(0);
        }
    }
}
