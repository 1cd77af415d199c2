//! Container commands other than run/exec: ps, stop, kill, rm, logs, inspect, top, stats, cp,
//! rename, pause, wait, update, diff, export, commit, prune.

use std::io::Write;

use anyhow::{Context, bail};
use base64::Engine as _;
use bollard_stubs::models::{ContainerSummary, ContainerTopResponse};
use clap::Args;
use http::Method;
use serde_json::{Value, json};

use super::error_text;
use crate::client::{ApiError, Client, for_each_chunk, for_each_json, query, read_json};
use crate::format::{self, Template};

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// ps options (ignored: the default -ef columns are shown)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
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

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub src: String,
    pub dst: String,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct OneArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// `key=value` filters as the API's JSON.
pub fn filters_json(filters: &[String]) -> anyhow::Result<String> {
    let mut m = serde_json::Map::new();
    for f in filters {
        let (k, v) = f.split_once('=').with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        m.entry(k.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(v.to_string(), json!(true));
    }
    Ok(Value::Object(m).to_string())
}

fn short(id: &str) -> String {
    skiff_common::units::short_id(id).to_string()
}

/// `ps`'s PORTS column: `127.0.0.1:8080->80/tcp, 443/tcp`.
pub fn ports_text(ports: &[bollard_stubs::models::Port]) -> String {
    let mut v: Vec<&bollard_stubs::models::Port> = ports.iter().collect();
    v.sort_by_key(|p| (p.public_port.is_none(), p.private_port, p.public_port));
    v.iter()
        .map(|p| {
            let typ = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            match (p.public_port, p.ip.as_deref()) {
                (Some(pp), ip) => format!("{}:{pp}->{}/{typ}", ip.unwrap_or("0.0.0.0"), p.private_port),
                (None, _) => format!("{}/{typ}", p.private_port),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn network_names(c: &ContainerSummary) -> String {
    let mut n: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    n.sort();
    n.join(",")
}

/// The fields `docker ps --format` knows.
fn ps_row(c: &ContainerSummary, no_trunc: bool) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let mut command = c.command.clone().unwrap_or_default();
    if !no_trunc && command.chars().count() > 20 {
        command = command.chars().take(19).collect::<String>() + "…";
    }
    let names: Vec<String> =
        c.names.clone().unwrap_or_default().iter().map(|n| n.trim_start_matches('/').to_string()).collect();
    let created = c.created.unwrap_or(0);
    let labels = c.labels.clone().unwrap_or_default();
    let mut label_list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    label_list.sort();
    let size = match (c.size_rw, c.size_root_fs) {
        (Some(rw), Some(root)) => {
            format!("{} (virtual {})", format::human_size(rw as f64), format::human_size(root as f64))
        }
        _ => String::new(),
    };
    let mounts: Vec<String> = c
        .mounts
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| m.name.clone().or(m.source.clone()).unwrap_or_default())
        .collect();
    json!({
        "ID": if no_trunc { id.clone() } else { short(&id) },
        "Image": c.image.clone().unwrap_or_default(),
        "Command": format!("\"{command}\""),
        "CreatedAt": skiff_common::timefmt::format_unix(created, 0),
        "RunningFor": format::since(created),
        "Ports": ports_text(c.ports.as_deref().unwrap_or(&[])),
        "State": c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": label_list.join(","),
        "Mounts": mounts.join(","),
        "Networks": network_names(c),
    })
}

pub async fn ps(c: &Client, a: PsArgs) -> anyhow::Result<u8> {
    let mut q = vec![("all", if a.all || a.latest || a.last > 0 { "1" } else { "0" }.to_string())];
    if a.size {
        q.push(("size", "1".into()));
    }
    if a.latest {
        q.push(("limit", "1".into()));
    } else if a.last > 0 {
        q.push(("limit", a.last.to_string()));
    }
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)?));
    }
    let list: Vec<ContainerSummary> = c.get_json(&format!("/containers/json{}", query(&q))).await?;
    if a.quiet {
        for ct in &list {
            let id = ct.id.clone().unwrap_or_default();
            println!("{}", if a.no_trunc { id } else { short(&id) });
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().map(|ct| ps_row(ct, a.no_trunc)).collect();
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("RunningFor", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Status", "STATUS"),
        ("State", "STATE"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
        ("Size", "SIZE"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("Networks", "NETWORKS"),
    ];
    let out = format::render_list(&rows, a.format.as_deref().filter(|f| *f != "table"), default, &headers)
        .map_err(|e| anyhow::anyhow!("template: {e}"))?;
    print!("{out}");
    Ok(0)
}

/// Runs `f` for each name, printing the name on success and the error otherwise.
async fn each<F, Fut>(names: &[String], what: &str, mut f: F) -> anyhow::Result<u8>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = Vec::new();
    for n in names {
        match f(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{}", error_text(&e));
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        if !what.is_empty() {
            eprintln!("Error: failed to {what} containers: {}", failed.join(", "));
        }
        Ok(1)
    }
}

pub async fn stop(c: &Client, a: StopArgs, action: &str) -> anyhow::Result<u8> {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    let qs = query(&q);
    each(&a.containers, action, |n| {
        let qs = qs.clone();
        async move { c.request(Method::POST, &format!("/containers/{n}/{action}{qs}")).await.map(|_| ()) }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> anyhow::Result<u8> {
    let qs = a.signal.as_ref().map(|s| query(&[("signal", s.clone())])).unwrap_or_default();
    each(&a.containers, "", |n| {
        let qs = qs.clone();
        async move { c.request(Method::POST, &format!("/containers/{n}/kill{qs}")).await.map(|_| ()) }
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> anyhow::Result<u8> {
    let qs = query(&[("force", a.force.to_string()), ("v", a.volumes.to_string()), ("link", a.link.to_string())]);
    each(&a.containers, "", |n| {
        let qs = qs.clone();
        async move { c.request(Method::DELETE, &format!("/containers/{n}{qs}")).await.map(|_| ()) }
    })
    .await
}

pub async fn simple(c: &Client, a: NamesArgs, action: &str) -> anyhow::Result<u8> {
    each(&a.containers, action, |n| async move {
        c.request(Method::POST, &format!("/containers/{n}/{action}")).await.map(|_| ())
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> anyhow::Result<u8> {
    c.request(Method::POST, &format!("/containers/{}/rename{}", a.container, query(&[("name", a.new_name.clone())])))
        .await?;
    Ok(0)
}

pub async fn wait(c: &Client, a: NamesArgs) -> anyhow::Result<u8> {
    let mut rc = 0;
    for n in &a.containers {
        match c.request(Method::POST, &format!("/containers/{n}/wait")).await {
            Ok(r) => {
                let v: Value = read_json(r).await?;
                println!("{}", v.get("StatusCode").and_then(|s| s.as_i64()).unwrap_or(0));
            }
            Err(e) => {
                eprintln!("{}", error_text(&e));
                rc = 1;
            }
        }
    }
    Ok(rc)
}

pub async fn logs(c: &Client, a: LogsArgs) -> anyhow::Result<u8> {
    let info: Value = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let tty = info.pointer("/Config/Tty").and_then(|v| v.as_bool()).unwrap_or(false);
    let mut q = vec![
        ("stdout", "1".to_string()),
        ("stderr", "1".to_string()),
        ("follow", if a.follow { "1" } else { "0" }.to_string()),
        ("tail", a.tail.clone()),
        ("timestamps", if a.timestamps { "1" } else { "0" }.to_string()),
    ];
    if let Some(s) = &a.since {
        q.push(("since", s.clone()));
    }
    if let Some(u) = &a.until {
        q.push(("until", u.clone()));
    }
    let resp = c.request(Method::GET, &format!("/containers/{}/logs{}", a.container, query(&q))).await?;
    let mut demux = crate::stream::Demux::default();
    let stdout = std::io::stdout();
    for_each_chunk(resp, |b| {
        if tty {
            let mut o = stdout.lock();
            o.write_all(&b)?;
            o.flush()?;
            return Ok(());
        }
        demux.feed(&b, crate::stream::write_to_std)?;
        Ok(())
    })
    .await?;
    Ok(0)
}

async fn inspect_one(c: &Client, name: &str, kind: Option<&str>, size: bool) -> anyhow::Result<Value> {
    let qs = if size { "?size=1" } else { "" };
    let tries: Vec<String> = match kind {
        Some("container") => vec![format!("/containers/{name}/json{qs}")],
        Some("image") => vec![format!("/images/{name}/json")],
        Some("volume") => vec![format!("/volumes/{name}")],
        Some(other) => bail!("\"{other}\" is not a valid value for --type"),
        None => {
            vec![format!("/containers/{name}/json{qs}"), format!("/images/{name}/json"), format!("/volumes/{name}")]
        }
    };
    for p in &tries {
        match c.get_json::<Value>(p).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if e.downcast_ref::<ApiError>().is_some_and(|a| a.status == http::StatusCode::NOT_FOUND) {
                    continue;
                }
                return Err(e);
            }
        }
    }
    bail!("Error: No such object: {name}")
}

pub async fn inspect(c: &Client, a: InspectArgs) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    let mut rc = 0;
    for n in &a.names {
        match inspect_one(c, n, a.kind.as_deref(), a.size).await {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{}", error_text(&e).trim_start_matches("Error: "));
                rc = 1;
            }
        }
    }
    print_inspect(&out, a.format.as_deref())?;
    Ok(rc)
}

pub fn print_inspect(items: &[Value], fmt: Option<&str>) -> anyhow::Result<()> {
    match fmt {
        None | Some("") | Some("json") => println!("{}", format::pretty(&Value::Array(items.to_vec()))),
        Some(f) => {
            let t = Template::parse(f).map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
            for v in items {
                println!("{}", t.render(v).map_err(|e| anyhow::anyhow!("template: executing \"\": {e}"))?);
            }
        }
    }
    Ok(())
}

pub async fn top(c: &Client, a: TopArgs) -> anyhow::Result<u8> {
    let t: ContainerTopResponse = c.get_json(&format!("/containers/{}/top", a.container)).await?;
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

/// `container:path` or a local path.
fn split_cp(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub async fn cp(c: &Client, a: CpArgs) -> anyhow::Result<u8> {
    match (split_cp(&a.src), split_cp(&a.dst)) {
        ((Some(ctr), src), (None, dst)) => {
            let resp = c
                .request(Method::GET, &format!("/containers/{ctr}/archive{}", query(&[("path", src.to_string())])))
                .await?;
            let stat: Value = resp
                .headers()
                .get("X-Docker-Container-Path-Stat")
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h.as_bytes()).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let mut tar = Vec::new();
            for_each_chunk(resp, |b| {
                tar.extend_from_slice(&b);
                Ok(())
            })
            .await?;
            if dst == "-" {
                std::io::stdout().write_all(&tar)?;
                return Ok(0);
            }
            let name = stat.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
            let dst_path = std::path::Path::new(dst);
            // Copy into an existing directory, or create dst as the copy itself.
            let (dir, rename) = if dst_path.is_dir() {
                (dst_path.to_path_buf(), None)
            } else {
                (
                    dst_path
                        .parent()
                        .map(|p| if p.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { p.to_path_buf() })
                        .unwrap_or_else(|| ".".into()),
                    dst_path.file_name().map(|f| f.to_string_lossy().into_owned()),
                )
            };
            let mut ar = tar::Archive::new(&tar[..]);
            ar.set_preserve_permissions(true);
            ar.set_overwrite(true);
            for entry in ar.entries()? {
                let mut e = entry?;
                let p = e.path()?.into_owned();
                let p = match (&rename, p.strip_prefix(&name)) {
                    (Some(r), Ok(rest)) if rest.as_os_str().is_empty() => std::path::PathBuf::from(r),
                    (Some(r), Ok(rest)) => std::path::Path::new(r).join(rest),
                    _ => p,
                };
                if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) || p.is_absolute() {
                    bail!("invalid path in archive: {}", p.display());
                }
                e.unpack(dir.join(&p))?;
            }
            Ok(0)
        }
        ((None, src), (Some(ctr), dst)) => {
            let src_path = std::path::Path::new(src).to_path_buf();
            let meta = std::fs::symlink_metadata(&src_path).with_context(|| format!("lstat {src}"))?;
            // Where does it go: into dst if dst is an existing directory, else as dst.
            let stat = c
                .request(Method::HEAD, &format!("/containers/{ctr}/archive{}", query(&[("path", dst.to_string())])))
                .await;
            let (target_dir, name) = match stat {
                Ok(r) => {
                    let s: Value = r
                        .headers()
                        .get("X-Docker-Container-Path-Stat")
                        .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h.as_bytes()).ok())
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or(Value::Null);
                    let is_dir = s.get("mode").and_then(|m| m.as_u64()).map(|m| m & (1 << 31) != 0).unwrap_or(false);
                    if is_dir {
                        (
                            dst.to_string(),
                            src_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                        )
                    } else {
                        let p = std::path::Path::new(dst);
                        (
                            p.parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
                            p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                        )
                    }
                }
                Err(_) => {
                    let p = std::path::Path::new(dst);
                    (
                        p.parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
                        p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    )
                }
            };
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(a.follow_link);
            if meta.is_dir() {
                b.append_dir_all(&name, &src_path)?;
            } else {
                b.append_path_with_name(&src_path, &name)?;
            }
            let data = b.into_inner()?;
            let q = query(&[
                ("path", target_dir),
                ("noOverwriteDirNonDir", "true".into()),
                ("copyUIDGID", a.archive.to_string()),
            ]);
            let cursor = std::io::Cursor::new(data);
            c.request_stream(Method::PUT, &format!("/containers/{ctr}/archive{q}"), cursor, "application/x-tar")
                .await?;
            Ok(0)
        }
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
    }
}

pub async fn update(c: &Client, a: UpdateArgs) -> anyhow::Result<u8> {
    let mut body = serde_json::Map::new();
    if let Some(m) = &a.memory {
        body.insert("Memory".into(), json!(crate::opts::parse_size(m)?));
    }
    if let Some(s) = &a.memory_swap {
        body.insert("MemorySwap".into(), json!(if s == "-1" { -1 } else { crate::opts::parse_size(s)? }));
    }
    if let Some(m) = &a.memory_reservation {
        body.insert("MemoryReservation".into(), json!(crate::opts::parse_size(m)?));
    }
    if let Some(cpus) = a.cpus {
        body.insert("NanoCpus".into(), json!((cpus * 1e9) as i64));
    }
    if let Some(s) = a.cpu_shares {
        body.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        let (name, max) =
            r.split_once(':').map(|(n, m)| (n.to_string(), m.parse::<i64>().ok())).unwrap_or((r.clone(), None));
        body.insert("RestartPolicy".into(), json!({ "Name": name, "MaximumRetryCount": max.unwrap_or(0) }));
    }
    let body = Value::Object(body);
    each(&a.containers, "update", |n| {
        let body = body.clone();
        async move { c.request_json(Method::POST, &format!("/containers/{n}/update"), &body).await.map(|_| ()) }
    })
    .await
}

pub async fn diff(c: &Client, a: OneArgs) -> anyhow::Result<u8> {
    let changes: Vec<Value> = c.get_json(&format!("/containers/{}/changes", a.container)).await?;
    for ch in changes {
        let k = match ch.get("Kind").and_then(|k| k.as_i64()) {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        println!("{k} {}", ch.get("Path").and_then(|p| p.as_str()).unwrap_or(""));
    }
    Ok(0)
}

pub async fn export(c: &Client, a: ExportArgs) -> anyhow::Result<u8> {
    if a.output.is_none() && rustix::termios::isatty(std::io::stdout()) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c.request(Method::GET, &format!("/containers/{}/export", a.container)).await?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {p}"))?),
        None => Box::new(std::io::stdout()),
    };
    for_each_chunk(resp, |b| Ok(out.write_all(&b)?)).await?;
    out.flush()?;
    Ok(0)
}

pub async fn commit(c: &Client, a: CommitArgs) -> anyhow::Result<u8> {
    let mut q = vec![("container", a.container.clone()), ("pause", a.pause.to_string())];
    if let Some(r) = &a.repository {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
            _ => (r.clone(), None),
        };
        q.push(("repo", repo));
        if let Some(t) = tag {
            q.push(("tag", t));
        }
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let v: Value = c.post_json(&format!("/commit{}", query(&q)), &json!({})).await?;
    println!("{}", v.get("Id").and_then(|i| i.as_str()).unwrap_or(""));
    Ok(0)
}

pub async fn prune(c: &Client, a: PruneArgs) -> anyhow::Result<u8> {
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let q = if a.filter.is_empty() { String::new() } else { query(&[("filters", filters_json(&a.filter)?)]) };
    let v: Value = c.post_json(&format!("/containers/prune{q}"), &json!({})).await?;
    let deleted = v.get("ContainersDeleted").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for d in deleted {
            println!("{}", d.as_str().unwrap_or(""));
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(v.get("SpaceReclaimed").and_then(|s| s.as_f64()).unwrap_or(0.0))
    );
    Ok(0)
}

/// Used by `events`/`image` modules: newline-delimited JSON with a callback.
pub async fn json_stream(c: &Client, path: &str, f: impl FnMut(Value) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let resp = c.request(Method::GET, path).await?;
    for_each_json(resp, f).await
}
