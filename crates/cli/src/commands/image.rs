//! Image commands: images, rmi, tag, history, import, load, save, pull, inspect, prune.

use std::io::Write;

use anyhow::{Context, bail};
use bollard_stubs::models::{HistoryResponseItem, ImageDeleteResponseItem, ImageSummary};
use clap::Args;
use http::Method;
use serde_json::{Value, json};

use super::container::{filters_json, print_inspect, short};
use super::error_text;
use crate::client::{Client, for_each_chunk, for_each_json, query};
use crate::format;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Repository (and tag) to list
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// File (or - for STDIN)
    pub file: String,
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub async fn images(c: &Client, a: ImagesArgs) -> anyhow::Result<u8> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![("all", a.all.to_string())];
    if !filters.is_empty() {
        q.push(("filters", filters_json(&filters)?));
    }
    let list: Vec<ImageSummary> = c.get_json(&format!("/images/json{}", query(&q))).await?;
    let mut rows = Vec::new();
    for img in &list {
        let id = if a.no_trunc { img.id.clone() } else { short(&img.id) };
        let pairs: Vec<(String, String)> = if img.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.repo_tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in pairs {
            let digest = img
                .repo_digests
                .iter()
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>");
            rows.push(json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": format::since(img.created),
                "CreatedAt": skiff_common::timefmt::format_unix(img.created, 0),
                "Size": format::human_size(img.size as f64),
                "Containers": img.containers.to_string(),
            }));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or("").to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let headers = [
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("Containers", "CONTAINERS"),
    ];
    print!(
        "{}",
        format::render_list(&rows, a.format.as_deref().filter(|f| *f != "table"), default, &headers)
            .map_err(|e| anyhow::anyhow!("template: {e}"))?
    );
    Ok(0)
}

pub async fn rmi(c: &Client, a: RmiArgs) -> anyhow::Result<u8> {
    let mut rc = 0;
    for img in &a.images {
        let q = query(&[("force", a.force.to_string()), ("noprune", a.no_prune.to_string())]);
        match c.request(Method::DELETE, &format!("/images/{img}{q}")).await {
            Ok(r) => {
                let items: Vec<ImageDeleteResponseItem> = crate::client::read_json(r).await?;
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{}", error_text(&e));
                rc = 1;
            }
        }
    }
    Ok(rc)
}

pub async fn tag(c: &Client, a: TagArgs) -> anyhow::Result<u8> {
    let (repo, tag) = match a.target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (a.target.clone(), "latest".to_string()),
    };
    c.request(Method::POST, &format!("/images/{}/tag{}", a.source, query(&[("repo", repo), ("tag", tag)]))).await?;
    Ok(0)
}

pub async fn history(c: &Client, a: HistoryArgs) -> anyhow::Result<u8> {
    let items: Vec<HistoryResponseItem> = c.get_json(&format!("/images/{}/history", a.image)).await?;
    if a.quiet {
        for i in &items {
            println!("{}", if a.no_trunc || i.id == "<missing>" { i.id.clone() } else { short(&i.id) });
        }
        return Ok(0);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut by = i.created_by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            json!({
                "ID": if a.no_trunc || i.id == "<missing>" { i.id.clone() } else { short(&i.id) },
                "CreatedSince": if a.human { format::since(i.created) } else { skiff_common::timefmt::format_unix(i.created, 0) },
                "CreatedAt": skiff_common::timefmt::format_unix(i.created, 0),
                "CreatedBy": by,
                "Size": if a.human { format::human_size(i.size as f64) } else { i.size.to_string() },
                "Comment": i.comment,
            })
        })
        .collect();
    let headers = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ];
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    print!(
        "{}",
        format::render_list(&rows, a.format.as_deref(), default, &headers)
            .map_err(|e| anyhow::anyhow!("template: {e}"))?
    );
    Ok(0)
}

pub async fn import(c: &Client, a: ImportArgs) -> anyhow::Result<u8> {
    let mut q = vec![("fromSrc", "-".to_string())];
    if let Some(r) = &a.reference {
        match r.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => {
                q.push(("repo", repo.to_string()));
                q.push(("tag", tag.to_string()));
            }
            _ => q.push(("repo", r.clone())),
        }
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let path = format!("/images/create{}", query(&q));
    let resp = if a.file == "-" {
        c.request_stream(Method::POST, &path, tokio::io::stdin(), "application/x-tar").await?
    } else {
        let f = tokio::fs::File::open(&a.file).await.with_context(|| format!("open {}", a.file))?;
        c.request_stream(Method::POST, &path, f, "application/x-tar").await?
    };
    for_each_json(resp, |v| {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            bail!("{e}");
        }
        if let Some(s) = v.get("status").and_then(|s| s.as_str()) {
            println!("{s}");
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

pub async fn load(c: &Client, a: LoadArgs) -> anyhow::Result<u8> {
    let path = format!("/images/load{}", query(&[("quiet", a.quiet.to_string())]));
    let resp = match &a.input {
        Some(f) => {
            let file = tokio::fs::File::open(f).await.with_context(|| format!("open {f}"))?;
            c.request_stream(Method::POST, &path, file, "application/x-tar").await?
        }
        None => {
            if rustix::termios::isatty(std::io::stdin()) {
                bail!("requested load from stdin, but stdin is empty");
            }
            c.request_stream(Method::POST, &path, tokio::io::stdin(), "application/x-tar").await?
        }
    };
    for_each_json(resp, |v| {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            bail!("{e}");
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            print!("{s}");
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

pub async fn save(c: &Client, a: SaveArgs) -> anyhow::Result<u8> {
    if a.output.is_none() && rustix::termios::isatty(std::io::stdout()) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let q: Vec<(&str, String)> = a.images.iter().map(|i| ("names", i.clone())).collect();
    let resp = c.request(Method::GET, &format!("/images/get{}", query(&q))).await?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {p}"))?),
        None => Box::new(std::io::stdout()),
    };
    for_each_chunk(resp, |b| Ok(out.write_all(&b)?)).await?;
    out.flush()?;
    Ok(0)
}

/// Pulls through the daemon (used by `pull` and by `run` for a missing image).
pub async fn pull_ref(c: &Client, image: &str, quiet: bool) -> anyhow::Result<()> {
    pull_with(c, image, None, quiet).await
}

async fn pull_with(c: &Client, image: &str, platform: Option<&str>, quiet: bool) -> anyhow::Result<()> {
    let (repo, tag) = split_tag(image);
    let mut q = vec![("fromImage", repo), ("tag", tag)];
    if let Some(p) = platform {
        q.push(("platform", p.to_string()));
    }
    let auth = super::registry_auth::auth_header_for(image)?;
    let resp = c
        .request_with_headers(Method::POST, &format!("/images/create{}", query(&q)), &[("X-Registry-Auth", auth)], None)
        .await?;
    let mut r = super::progress::Renderer::new(quiet);
    let res = for_each_json(resp, |v| r.message(&v)).await;
    r.finish();
    res?;
    if quiet {
        println!("{}", full_name(image));
    }
    Ok(())
}

/// `name[:tag|@digest]` → (name, tag or digest); the default tag is latest.
fn split_tag(image: &str) -> (String, String) {
    if let Some((r, d)) = image.split_once('@') {
        return (r.to_string(), d.to_string());
    }
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

fn full_name(image: &str) -> String {
    let (r, t) = split_tag(image);
    let sep = if t.starts_with("sha256:") { "@" } else { ":" };
    let r = if super::registry_auth::registry_of(&r) == "docker.io" && !r.starts_with("docker.io/") {
        if r.contains('/') { format!("docker.io/{r}") } else { format!("docker.io/library/{r}") }
    } else {
        r
    };
    format!("{r}{sep}{t}")
}

pub async fn pull(c: &Client, a: PullArgs) -> anyhow::Result<u8> {
    pull_with(c, &a.image, a.platform.as_deref(), a.quiet).await?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub image: String,
}

pub async fn push(c: &Client, a: PushArgs) -> anyhow::Result<u8> {
    let (repo, tag) = if a.all_tags {
        if a.image.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')) {
            bail!("tag can't be used with --all-tags/-a");
        }
        (a.image.clone(), String::new())
    } else {
        split_tag(&a.image)
    };
    let auth = super::registry_auth::auth_header_for(&a.image)?;
    let resp = c
        .request_with_headers(
            Method::POST,
            &format!("/images/{repo}/push{}", query(&[("tag", tag)])),
            &[("X-Registry-Auth", auth)],
            None,
        )
        .await?;
    let mut r = super::progress::Renderer::new(a.quiet);
    let res = for_each_json(resp, |v| r.message(&v)).await;
    r.finish();
    res?;
    if a.quiet {
        println!("{}", full_name(&a.image));
    }
    Ok(0)
}

pub async fn inspect(c: &Client, a: ImageInspectArgs) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    let mut rc = 0;
    for i in &a.images {
        match c.get_json::<Value>(&format!("/images/{i}/json")).await {
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

pub async fn prune(c: &Client, a: ImagePruneArgs) -> anyhow::Result<u8> {
    if !a.force {
        eprint!("WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let f = if a.all { json!({"dangling": {"false": true}}) } else { json!({"dangling": {"true": true}}) };
    let v: Value = c.post_json(&format!("/images/prune{}", query(&[("filters", f.to_string())])), &json!({})).await?;
    let deleted = v.get("ImagesDeleted").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for d in deleted {
            if let Some(u) = d.get("Untagged").and_then(|x| x.as_str()) {
                println!("untagged: {u}");
            }
            if let Some(x) = d.get("Deleted").and_then(|x| x.as_str()) {
                println!("deleted: {x}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(v.get("SpaceReclaimed").and_then(|s| s.as_f64()).unwrap_or(0.0))
    );
    Ok(0)
}
