//! `skiff build`: sends the context as a tar to `POST /build` and shows the steps with the time
//! each took and whether it came from the cache.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use http::Method;

use crate::client::{Client, for_each_json, query};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pub pull: bool,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Suppress the build output and print the image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Set the networking mode for the RUN instructions
    #[arg(long)]
    pub network: Option<String>,
    /// Set target platform (the host's only)
    #[arg(long)]
    pub platform: Option<String>,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// Also export the result's filesystem: type=local,dest=DIR | type=tar,dest=FILE | DIR | - (tar to stdout)
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)
    #[arg(long)]
    pub secret: Vec<String>,
    /// The build context directory
    pub path: String,
}

fn kv_json(items: &[String], what: &str) -> anyhow::Result<String> {
    let mut m = serde_json::Map::new();
    for i in items {
        let (k, v) = match i.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // `--build-arg NAME` takes the value from the environment, as docker does.
            None => match std::env::var(i) {
                Ok(v) => (i.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            bail!("invalid {what} {i:?}");
        }
        m.insert(k, serde_json::Value::String(v));
    }
    Ok(serde_json::Value::Object(m).to_string())
}

pub async fn build(c: &Client, a: BuildArgs) -> anyhow::Result<u8> {
    let output = match &a.output {
        Some(o) => Some(parse_output(o)?),
        None => None,
    };
    let ctx = std::path::PathBuf::from(&a.path);
    if !ctx.is_dir() {
        bail!("unable to prepare context: path {:?} not found", a.path);
    }
    // The Dockerfile may live outside the context: then it is added to the tar under a
    // private name, as the docker CLI does.
    let mut dockerfile = "Dockerfile".to_string();
    let mut extra: Option<(String, Vec<u8>)> = None;
    if let Some(f) = &a.file {
        let fp = std::path::Path::new(f);
        let abs = if fp.is_absolute() { fp.to_path_buf() } else { std::env::current_dir()?.join(fp) };
        let ctx_abs = std::fs::canonicalize(&ctx)?;
        let abs = std::fs::canonicalize(&abs).with_context(|| format!("Dockerfile {f}"))?;
        match abs.strip_prefix(&ctx_abs) {
            Ok(rel) => dockerfile = rel.to_string_lossy().into_owned(),
            Err(_) => {
                dockerfile = ".dockerfile.skiff".into();
                extra = Some((dockerfile.clone(), std::fs::read(&abs)?));
            }
        }
    }
    // Secrets travel in the context tar under a directory the daemon takes out before the build.
    let secrets = a.secret.iter().map(|s| read_secret(s)).collect::<anyhow::Result<Vec<_>>>()?;
    // The context streams straight from a writer thread into the request (no temp file).
    let (rd, wr) = rustix::pipe::pipe()?;
    let ctx2 = ctx.clone();
    let writer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(wr)));
        b.follow_symlinks(false);
        b.append_dir_all(".", &ctx2).with_context(|| format!("reading the context {}", ctx2.display()))?;
        if let Some((name, data)) = &extra {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..])?;
        }
        for (id, data) in &secrets {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, format!(".skiff-build-secrets/{id}"), &data[..])?;
        }
        b.into_inner()?.flush()?;
        Ok(())
    });
    let q = build_query(&a, dockerfile)?;
    let file = tokio::fs::File::from_std(std::fs::File::from(rd));
    let resp = c.request_stream(Method::POST, &format!("/build{}", query(&q)), file, "application/x-tar").await;
    match writer.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => bail!("writing the build context failed"),
    }
    let resp = resp?;
    let t0 = Instant::now();
    let mut step_start = Instant::now();
    let mut in_step = false;
    let mut id = None;
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            err = Some(e.to_string());
            return Ok(());
        }
        if let Some(i) = v.get("aux").and_then(|a| a.get("ID")).and_then(|i| i.as_str()) {
            id = Some(i.to_string());
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            if s.starts_with("Step ") {
                if in_step {
                    println!("     ({:.2}s)", step_start.elapsed().as_secs_f64());
                }
                in_step = true;
                step_start = Instant::now();
                print!("[{:>6.2}s] {s}", t0.elapsed().as_secs_f64());
            } else if s.starts_with("Successfully built") && in_step {
                println!("     ({:.2}s)", step_start.elapsed().as_secs_f64());
                in_step = false;
                print!("{s}");
            } else {
                print!("{s}");
            }
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    let Some(id) = id else { bail!("the daemon did not report the built image") };
    if a.quiet {
        println!("{id}");
    } else {
        println!("built in {:.2}s", t0.elapsed().as_secs_f64());
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).with_context(|| format!("writing {f}"))?;
    }
    if let Some(o) = output {
        export(c, &id, o).await?;
    }
    Ok(0)
}

/// `--secret id=ID,src=FILE` (or `env=VAR`, or the variable named as the ID): the secret's ID
/// and content.
fn read_secret(spec: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut id = None;
    let mut data = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => data = Some(std::fs::read(v).with_context(|| format!("secret file {v}"))?),
            Some(("env", v)) => data = Some(std::env::var(v).with_context(|| format!("secret env {v}"))?.into_bytes()),
            Some(("type", _)) => {}
            _ => bail!("invalid --secret {spec:?} (want id=ID,src=FILE or id=ID,env=VAR)"),
        }
    }
    let id = id.ok_or_else(|| anyhow::anyhow!("--secret {spec:?} needs id="))?;
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        bail!("invalid secret id {id:?}");
    }
    let data = match data {
        Some(d) => d,
        None => std::env::var(&id).with_context(|| format!("secret {id}: no src= and no ${id}"))?.into_bytes(),
    };
    Ok((id, data))
}

/// The query of `POST /build` from the flags.
fn build_query(a: &BuildArgs, dockerfile: String) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut q = vec![("dockerfile", dockerfile), ("q", a.quiet.to_string()), ("nocache", a.no_cache.to_string())];
    for t in &a.tags {
        q.push(("t", t.clone()));
    }
    q.push(("buildargs", kv_json(&a.build_args, "--build-arg")?));
    q.push(("labels", kv_json(&a.labels, "--label")?));
    if let Some(t) = &a.target {
        q.push(("target", t.clone()));
    }
    if a.pull {
        q.push(("pull", "1".into()));
    }
    if a.force_rm {
        q.push(("forcerm", "1".into()));
    }
    if let Some(n) = &a.network {
        q.push(("networkmode", n.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    Ok(q)
}

#[derive(Debug, PartialEq, Eq)]
enum Output {
    Local(String),
    Tar(Option<String>),
}

fn parse_output(s: &str) -> anyhow::Result<Output> {
    if s == "-" {
        return Ok(Output::Tar(None));
    }
    if !s.contains('=') {
        return Ok(Output::Local(s.to_string()));
    }
    let mut kind = None;
    let mut dest = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => bail!("invalid --output {s:?}"),
        }
    }
    match kind.as_deref() {
        Some("local") => Ok(Output::Local(dest.ok_or_else(|| anyhow::anyhow!("--output type=local needs dest=DIR"))?)),
        Some("tar") => Ok(Output::Tar(dest.filter(|d| d != "-"))),
        Some(other) => bail!("--output type={other} is not supported (local, tar)"),
        None => bail!("--output needs type=local|tar"),
    }
}

/// Writes the built image's filesystem out, through a container that is never started.
async fn export(c: &Client, id: &str, o: Output) -> anyhow::Result<()> {
    let body = serde_json::json!({ "Image": id, "Cmd": ["/skiff-export"], "Entrypoint": [] });
    let created: serde_json::Value = c.post_json("/containers/create", &body).await?;
    let cid = created.get("Id").and_then(|i| i.as_str()).unwrap_or_default().to_string();
    let result = async {
        let resp = c.request(Method::GET, &format!("/containers/{cid}/export")).await?;
        let tmp = std::env::temp_dir().join(format!("skiff-export-{}.tar", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        crate::client::for_each_chunk(resp, |b| Ok(f.write_all(&b)?)).await?;
        f.flush()?;
        match &o {
            Output::Tar(Some(dest)) => {
                std::fs::copy(&tmp, dest).with_context(|| format!("writing {dest}"))?;
            }
            Output::Tar(None) => {
                std::io::copy(&mut std::fs::File::open(&tmp)?, &mut std::io::stdout())?;
            }
            Output::Local(dir) => {
                std::fs::create_dir_all(dir)?;
                let mut ar = tar::Archive::new(std::fs::File::open(&tmp)?);
                ar.set_preserve_permissions(true);
                ar.unpack(dir).with_context(|| format!("writing into {dir}"))?;
            }
        }
        let _ = std::fs::remove_file(&tmp);
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = c.request(Method::DELETE, &format!("/containers/{cid}?force=1")).await;
    result
}
