//! `volume create|ls|inspect|rm|prune`.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::container::{filters_json, print_inspect};
use super::error_text;
use crate::client::{Client, query};
use crate::format;

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values
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
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn kv(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), Value::String(v.to_string()))
        })
        .collect()
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> anyhow::Result<u8> {
    match cmd {
        VolumeCmd::Create(a) => {
            let body = json!({ "Name": a.name.clone().unwrap_or_default(), "Driver": a.driver, "Labels": kv(&a.label), "DriverOpts": kv(&a.opt) });
            let v: Value = c.post_json("/volumes/create", &body).await?;
            println!("{}", v.get("Name").and_then(|n| n.as_str()).unwrap_or(""));
            Ok(0)
        }
        VolumeCmd::Ls(a) => {
            let q = if a.filter.is_empty() { String::new() } else { query(&[("filters", filters_json(&a.filter)?)]) };
            let v: Value = c.get_json(&format!("/volumes{q}")).await?;
            let vols = v.get("Volumes").and_then(|v| v.as_array()).cloned().unwrap_or_default();
            if a.quiet {
                for v in &vols {
                    println!("{}", v.get("Name").and_then(|n| n.as_str()).unwrap_or(""));
                }
                return Ok(0);
            }
            let headers = [
                ("Driver", "DRIVER"),
                ("Name", "VOLUME NAME"),
                ("Mountpoint", "MOUNTPOINT"),
                ("Scope", "SCOPE"),
                ("Labels", "LABELS"),
            ];
            print!(
                "{}",
                format::render_list(&vols, a.format.as_deref(), "table {{.Driver}}\t{{.Name}}", &headers)
                    .map_err(|e| anyhow::anyhow!("template: {e}"))?
            );
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut rc = 0;
            for n in &a.names {
                match c.get_json::<Value>(&format!("/volumes/{n}")).await {
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
        VolumeCmd::Rm(a) => {
            let mut rc = 0;
            for n in &a.names {
                match c
                    .request(Method::DELETE, &format!("/volumes/{n}{}", query(&[("force", a.force.to_string())])))
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{}", error_text(&e));
                        rc = 1;
                    }
                }
            }
            Ok(rc)
        }
        VolumeCmd::Prune(a) => {
            if !a.force {
                eprint!(
                    "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
                );
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let q = if a.all { query(&[("filters", json!({"all": ["true"]}).to_string())]) } else { String::new() };
            let v: Value = c.post_json(&format!("/volumes/prune{q}"), &json!({})).await?;
            let deleted = v.get("VolumesDeleted").and_then(|d| d.as_array()).cloned().unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
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
    }
}
