//! Container commands other than run/exec: ps, stop, kill, rm, logs, inspect, top, stats, cp,
//! rename, pause, wait, update, diff, export, commit, prune.

use std::io::Write;

use anyhow::{Context, bail};
use bollard_stubs::models::ContainerSummary;
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

pub(super) fn short(id: &str) -> String {
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
