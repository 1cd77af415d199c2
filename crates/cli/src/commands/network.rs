//! `network create|ls|inspect|rm|prune|connect|disconnect`, and `port`.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::container::{filters_json, print_inspect, short};
use super::error_text;
use crate::client::{Client, query};
use crate::format;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// Auxiliary IPv4 addresses used by Network driver (name=ip)
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// Add link to another container
    #[arg(long = "link")]
    pub link: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

fn kv(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), Value::String(v.to_string()))
        })
        .collect()
}

pub async fn run(c: &Client, cmd: NetworkCmd) -> anyhow::Result<u8> {
    match cmd {
        NetworkCmd::Create(a) => create(c, a).await,
        NetworkCmd::Ls(a) => ls(c, a).await,
        NetworkCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut rc = 0;
            for n in &a.names {
                match c.get_json::<Value>(&format!("/networks/{n}")).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("{}", error_text(&e));
                        rc = 1;
                    }
                }
            }
            print_inspect(&out, a.format.as_deref())?;
            Ok(rc)
        }
        NetworkCmd::Rm(a) => {
            let mut rc = 0;
            for n in &a.names {
                match c.request(Method::DELETE, &format!("/networks/{n}")).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        let text = error_text(&e);
                        if a.force && text.contains("not found") {
                            continue;
                        }
                        eprintln!("{text}");
                        rc = 1;
                    }
                }
            }
            Ok(rc)
        }
        NetworkCmd::Prune(a) => prune(c, a).await,
        NetworkCmd::Connect(a) => {
            let mut ep = serde_json::Map::new();
            if let Some(ip) = &a.ip {
                ep.insert("IPAMConfig".into(), json!({ "IPv4Address": ip }));
            }
            if !a.alias.is_empty() {
                ep.insert("Aliases".into(), json!(a.alias));
            }
            if !a.link.is_empty() {
                ep.insert("Links".into(), json!(a.link));
            }
            let body = json!({ "Container": a.container, "EndpointConfig": ep });
            c.request_json(Method::POST, &format!("/networks/{}/connect", a.network), &body).await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({ "Container": a.container, "Force": a.force });
            c.request_json(Method::POST, &format!("/networks/{}/disconnect", a.network), &body).await?;
            Ok(0)
        }
    }
}

/// `skiff network create`.
async fn create(c: &Client, a: CreateArgs) -> anyhow::Result<u8> {
    let mut ipam = json!({ "Driver": "default", "Config": [] });
    if a.subnet.is_some() || a.gateway.is_some() || a.ip_range.is_some() || !a.aux_address.is_empty() {
        let mut cfg = serde_json::Map::new();
        for (k, v) in [("Subnet", &a.subnet), ("Gateway", &a.gateway), ("IPRange", &a.ip_range)] {
            if let Some(v) = v {
                cfg.insert(k.into(), Value::String(v.clone()));
            }
        }
        if !a.aux_address.is_empty() {
            cfg.insert("AuxiliaryAddresses".into(), Value::Object(kv(&a.aux_address)));
        }
        ipam["Config"] = json!([cfg]);
    }
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "IPAM": ipam,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Labels": kv(&a.label),
        "Options": kv(&a.opt),
    });
    let v: Value = c.post_json("/networks/create", &body).await?;
    println!("{}", v.get("Id").and_then(|n| n.as_str()).unwrap_or(""));
    Ok(0)
}

/// `skiff network ls`: a table, `-q` IDs, or `--format`.
async fn ls(c: &Client, a: LsArgs) -> anyhow::Result<u8> {
    let q = if a.filter.is_empty() { String::new() } else { query(&[("filters", filters_json(&a.filter)?)]) };
    let nets: Vec<Value> = c.get_json(&format!("/networks{q}")).await?;
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| {
            let id = n.get("Id").and_then(|v| v.as_str()).unwrap_or("");
            let mut labels: Vec<String> = n
                .get("Labels")
                .and_then(|l| l.as_object())
                .map(|o| o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
                .unwrap_or_default();
            labels.sort();
            json!({
                "ID": if a.no_trunc { id.to_string() } else { short(id) },
                "Name": n.get("Name").cloned().unwrap_or_default(),
                "Driver": n.get("Driver").cloned().unwrap_or_default(),
                "Scope": n.get("Scope").cloned().unwrap_or_default(),
                "IPv6": n.get("EnableIPv6").and_then(|v| v.as_bool()).unwrap_or(false).to_string(),
                "Internal": n.get("Internal").and_then(|v| v.as_bool()).unwrap_or(false).to_string(),
                "Labels": labels.join(","),
                "CreatedAt": n.get("Created").cloned().unwrap_or_default(),
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let headers = [
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ];
    print!(
        "{}",
        format::render_list(&rows, a.format.as_deref(), "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", &headers)
            .map_err(|e| anyhow::anyhow!("template: {e}"))?
    );
    Ok(0)
}

/// `skiff network prune`, asking first unless `-f`.
async fn prune(c: &Client, a: PruneArgs) -> anyhow::Result<u8> {
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let q = if a.filter.is_empty() { String::new() } else { query(&[("filters", filters_json(&a.filter)?)]) };
    let v: Value = c.post_json(&format!("/networks/prune{q}"), &json!({})).await?;
    let deleted = v.get("NetworksDeleted").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for d in deleted {
            println!("{}", d.as_str().unwrap_or(""));
        }
    }
    Ok(0)
}

/// `skiff port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(c: &Client, a: PortArgs) -> anyhow::Result<u8> {
    let v: Value = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let ports = v.pointer("/NetworkSettings/Ports").and_then(|p| p.as_object()).cloned().unwrap_or_default();
    let want = a.port.as_ref().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") });
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| (k.split('/').next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0), k.to_string()));
    let mut found = false;
    for k in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in ports[k].as_array().cloned().unwrap_or_default() {
            let ip = b.get("HostIp").and_then(|x| x.as_str()).unwrap_or("0.0.0.0");
            let hp = b.get("HostPort").and_then(|x| x.as_str()).unwrap_or("");
            found = true;
            if want.is_some() {
                println!("{ip}:{hp}");
            } else {
                println!("{k} -> {ip}:{hp}");
            }
        }
    }
    if let (Some(w), false) = (&want, found) {
        anyhow::bail!("Error: No public port '{w}' published for {}", a.container);
    }
    Ok(0)
}
