//! `info`, `version`, `events`, `system df`.

use clap::Args;
use serde_json::Value;

use super::container::{filters_json, json_stream, print_inspect};
use crate::client::{Client, query};
use crate::format;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn info(c: &Client, a: InfoArgs) -> anyhow::Result<u8> {
    let v: Value = c.get_json("/info").await?;
    if let Some(f) = &a.format {
        print_inspect(&[v], Some(f))?;
        return Ok(0);
    }
    let g = |k: &str| v.get(k).map(format::plain).unwrap_or_default();
    println!("Server:");
    println!(" Containers: {}", g("Containers"));
    println!("  Running: {}", g("ContainersRunning"));
    println!("  Paused: {}", g("ContainersPaused"));
    println!("  Stopped: {}", g("ContainersStopped"));
    println!(" Images: {}", g("Images"));
    println!(" Server Version: {}", g("ServerVersion"));
    println!(" Storage Driver: {}", g("Driver"));
    println!(" Logging Driver: {}", g("LoggingDriver"));
    println!(" Cgroup Driver: {}", g("CgroupDriver"));
    println!(" Cgroup Version: {}", g("CgroupVersion"));
    println!(" Default Runtime: {}", g("DefaultRuntime"));
    println!(" Kernel Version: {}", g("KernelVersion"));
    println!(" Operating System: {}", g("OperatingSystem"));
    println!(" OSType: {}", g("OSType"));
    println!(" Architecture: {}", g("Architecture"));
    println!(" CPUs: {}", g("NCPU"));
    println!(" Total Memory: {}", format::bytes_size(v.get("MemTotal").and_then(|m| m.as_f64()).unwrap_or(0.0)));
    println!(" Name: {}", g("Name"));
    println!(" ID: {}", g("ID"));
    println!(" Docker Root Dir: {}", g("DockerRootDir"));
    println!(" Live Restore Enabled: {}", g("LiveRestoreEnabled"));
    Ok(0)
}

pub async fn version(c: &Client, a: VersionArgs) -> anyhow::Result<u8> {
    let server: Value = c.get_json("/version").await.unwrap_or(Value::Null);
    let v = serde_json::json!({
        "Client": { "Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.50", "Os": "linux", "Arch": std::env::consts::ARCH },
        "Server": server,
    });
    if let Some(f) = &a.format {
        print_inspect(&[v], Some(f))?;
        return Ok(0);
    }
    println!("Client: skiff");
    println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:       1.50");
    println!(" OS/Arch:           linux/{}", std::env::consts::ARCH);
    println!();
    if server.is_null() {
        eprintln!("Cannot connect to the skiff daemon.");
        return Ok(1);
    }
    let g = |k: &str| server.get(k).map(format::plain).unwrap_or_default();
    println!("Server: skiff");
    println!(" Engine:");
    println!("  Version:          {}", g("Version"));
    println!("  API version:      {} (minimum version {})", g("ApiVersion"), g("MinAPIVersion"));
    println!("  OS/Arch:          {}/{}", g("Os"), g("Arch"));
    println!("  Kernel version:   {}", g("KernelVersion"));
    Ok(0)
}

pub async fn events(c: &Client, a: EventsArgs) -> anyhow::Result<u8> {
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", s.clone()));
    }
    if let Some(u) = &a.until {
        q.push(("until", u.clone()));
    }
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)?));
    }
    let tmpl = match &a.format {
        Some(f) if f != "json" => Some(format::Template::parse(f).map_err(|e| anyhow::anyhow!("template: {e}"))?),
        _ => None,
    };
    let as_json = a.format.as_deref() == Some("json");
    json_stream(c, &format!("/events{}", query(&q)), |ev| {
        if as_json {
            println!("{ev}");
        } else if let Some(t) = &tmpl {
            println!("{}", t.render(&ev).map_err(|e| anyhow::anyhow!("template: {e}"))?);
        } else {
            let nanos = ev.get("timeNano").and_then(|n| n.as_i64()).unwrap_or(0);
            let ts = skiff_common::timefmt::format_unix_fixed(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32);
            let attrs = ev
                .pointer("/Actor/Attributes")
                .and_then(|a| a.as_object())
                .map(|m| {
                    m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", ")
                })
                .unwrap_or_default();
            println!(
                "{} {} {} {} ({attrs})",
                ts.replace('Z', "+00:00"),
                ev.get("Type").and_then(|t| t.as_str()).unwrap_or(""),
                ev.get("Action").and_then(|t| t.as_str()).unwrap_or(""),
                ev.pointer("/Actor/ID").and_then(|t| t.as_str()).unwrap_or("")
            );
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

pub async fn df(c: &Client, a: DfArgs) -> anyhow::Result<u8> {
    let v: Value = c.get_json("/system/df").await?;
    let arr = |k: &str| v.get(k).and_then(|x| x.as_array()).cloned().unwrap_or_default();
    let images = arr("Images");
    let containers = arr("Containers");
    let volumes = arr("Volumes");
    let img_total: f64 = images.iter().map(|i| i.get("Size").and_then(|s| s.as_f64()).unwrap_or(0.0)).sum();
    let img_active = images.iter().filter(|i| i.get("Containers").and_then(|c| c.as_i64()).unwrap_or(0) > 0).count();
    let img_reclaim: f64 = images
        .iter()
        .filter(|i| i.get("Containers").and_then(|c| c.as_i64()).unwrap_or(0) == 0)
        .map(|i| {
            i.get("Size").and_then(|s| s.as_f64()).unwrap_or(0.0)
                - i.get("SharedSize").and_then(|s| s.as_f64()).unwrap_or(0.0).max(0.0)
        })
        .sum();
    let ct_total: f64 = containers.iter().map(|c| c.get("SizeRw").and_then(|s| s.as_f64()).unwrap_or(0.0)).sum();
    let ct_active = containers.iter().filter(|c| c.get("State").and_then(|s| s.as_str()) == Some("running")).count();
    let ct_reclaim: f64 = containers
        .iter()
        .filter(|c| c.get("State").and_then(|s| s.as_str()) != Some("running"))
        .map(|c| c.get("SizeRw").and_then(|s| s.as_f64()).unwrap_or(0.0))
        .sum();
    let vol_total: f64 =
        volumes.iter().map(|v| v.pointer("/UsageData/Size").and_then(|s| s.as_f64()).unwrap_or(0.0)).sum();
    let vol_active =
        volumes.iter().filter(|v| v.pointer("/UsageData/RefCount").and_then(|s| s.as_i64()).unwrap_or(0) > 0).count();
    let vol_reclaim: f64 = volumes
        .iter()
        .filter(|v| v.pointer("/UsageData/RefCount").and_then(|s| s.as_i64()).unwrap_or(0) == 0)
        .map(|v| v.pointer("/UsageData/Size").and_then(|s| s.as_f64()).unwrap_or(0.0))
        .sum();
    let pct = |r: f64, t: f64| if t > 0.0 { format!(" ({:.0}%)", r / t * 100.0) } else { String::new() };
    let rows = vec![
        serde_json::json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": img_active.to_string(), "Size": format::human_size(img_total), "Reclaimable": format!("{}{}", format::human_size(img_reclaim), pct(img_reclaim, img_total))}),
        serde_json::json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": ct_active.to_string(), "Size": format::human_size(ct_total), "Reclaimable": format!("{}{}", format::human_size(ct_reclaim), pct(ct_reclaim, ct_total))}),
        serde_json::json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(), "Active": vol_active.to_string(), "Size": format::human_size(vol_total), "Reclaimable": format!("{}{}", format::human_size(vol_reclaim), pct(vol_reclaim, vol_total))}),
        serde_json::json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    let headers = [
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ];
    print!(
        "{}",
        format::render_list(
            &rows,
            a.format.as_deref(),
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
            &headers
        )
        .map_err(|e| anyhow::anyhow!("template: {e}"))?
    );
    let _ = a.verbose;
    Ok(0)
}
