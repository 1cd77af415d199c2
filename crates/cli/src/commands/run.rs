//! `run`, `create`, `start`, `attach`, `exec`.

use anyhow::{Context, bail};
use bollard_stubs::models::{ContainerCreateResponse, ContainerInspectResponse, ExecConfig};
use clap::Args;
use http::Method;

use super::{error_text, report_run_error};
use crate::client::{ApiError, Client, query, read_json};
use crate::opts::{RunOpts, build_create};
use crate::stream::{self, RawMode};

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub opts: RunOpts,
    /// Image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

/// Creates a container; a missing image is reported the way docker reports it.
async fn create_container(c: &Client, a: &RunArgs) -> anyhow::Result<String> {
    let body = build_create(&a.opts, &a.image, &a.cmd, stream::terminal_size())?;
    let mut q = Vec::new();
    if let Some(n) = &a.opts.name {
        q.push(("name", n.clone()));
    }
    if let Some(p) = &a.opts.platform {
        q.push(("platform", p.clone()));
    }
    let path = format!("/containers/create{}", query(&q));
    match c.post_json::<_, ContainerCreateResponse>(&path, &body).await {
        Ok(r) => {
            for w in &r.warnings {
                eprintln!("WARNING: {w}");
            }
            if let Some(f) = &a.opts.cidfile {
                std::fs::write(f, &r.id).with_context(|| format!("writing the container ID to {f}"))?;
            }
            Ok(r.id)
        }
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>()
                && api.status == http::StatusCode::NOT_FOUND
                && api.message.starts_with("No such image")
                && a.opts.pull != "never"
            {
                eprintln!("Unable to find image '{}' locally", display_ref(&a.image));
                super::image::pull_ref(c, &a.image, a.opts.quiet).await?;
                let r: ContainerCreateResponse = c.post_json(&path, &body).await?;
                return Ok(r.id);
            }
            Err(e)
        }
    }
}

fn display_ref(r: &str) -> String {
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') { r.to_string() } else { format!("{r}:latest") }
}

pub async fn create(c: &Client, a: RunArgs) -> anyhow::Result<u8> {
    match create_container(c, &a).await {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err(e) => Ok(report_run_error(&e)),
    }
}

fn attach_query(stdin: bool, stdout: bool, stderr: bool, detach_keys: Option<&str>) -> String {
    let b = |v: bool| if v { "1".to_string() } else { "0".to_string() };
    let mut q = vec![("stream", "1".to_string()), ("stdin", b(stdin)), ("stdout", b(stdout)), ("stderr", b(stderr))];
    if let Some(k) = detach_keys {
        q.push(("detachKeys", k.to_string()));
    }
    query(&q)
}

async fn resize(c: &Client, path: &str) {
    if let Some((h, w)) = stream::terminal_size() {
        let _ = c.request(Method::POST, &format!("{path}?h={h}&w={w}")).await;
    }
}

pub async fn run(c: &Client, a: RunArgs) -> anyhow::Result<u8> {
    let id = match create_container(c, &a).await {
        Ok(id) => id,
        Err(e) => return Ok(report_run_error(&e)),
    };
    if a.opts.detach {
        if let Err(e) = c.request(Method::POST, &format!("/containers/{id}/start")).await {
            return Ok(report_run_error(&e));
        }
        println!("{id}");
        return Ok(0);
    }
    let attach: Vec<String> = a.opts.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    let (sin, sout, serr) = if attach.is_empty() {
        (a.opts.interactive, true, true)
    } else {
        (
            attach.iter().any(|s| s == "stdin"),
            attach.iter().any(|s| s == "stdout"),
            attach.iter().any(|s| s == "stderr"),
        )
    };
    let (up, raw) = c
        .hijack::<()>(
            &format!("/containers/{id}/attach{}", attach_query(sin, sout, serr, a.opts.detach_keys.as_deref())),
            None,
        )
        .await?;
    let condition = if a.opts.rm { "removed" } else { "next-exit" };
    let waiter = {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let r = c.request(Method::POST, &format!("/containers/{id}/wait?condition={condition}")).await?;
            let v: serde_json::Value = read_json(r).await?;
            Ok::<i64, anyhow::Error>(v.get("StatusCode").and_then(|s| s.as_i64()).unwrap_or(0))
        })
    };
    if let Err(e) = c.request(Method::POST, &format!("/containers/{id}/start")).await {
        let code = report_run_error(&e);
        if a.opts.rm {
            let _ = waiter.await;
        }
        return Ok(code);
    }
    let _raw_mode =
        if a.opts.tty && a.opts.interactive && stream::stdin_is_tty() { Some(RawMode::enable()) } else { None };
    if a.opts.tty {
        resize(c, &format!("/containers/{id}/resize")).await;
    }
    stream::relay(up, raw, sin).await?;
    drop(_raw_mode);
    let code = match waiter.await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("{}", error_text(&e));
            125
        }
        Err(_) => 125,
    };
    Ok(code.clamp(0, 255) as u8)
}

pub async fn start(c: &Client, a: StartArgs) -> anyhow::Result<u8> {
    if !a.attach && !a.interactive {
        let mut rc = 0;
        for n in &a.containers {
            match c.request(Method::POST, &format!("/containers/{n}/start")).await {
                Ok(_) => println!("{n}"),
                Err(e) => {
                    eprintln!("{}", error_text(&e));
                    rc = 1;
                }
            }
        }
        if rc != 0 {
            eprintln!("Error: failed to start containers: {}", a.containers.join(", "));
        }
        return Ok(rc);
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let n = &a.containers[0];
    let info: ContainerInspectResponse = c.get_json(&format!("/containers/{n}/json")).await?;
    let cfg = info.config.unwrap_or_default();
    let tty = cfg.tty.unwrap_or(false);
    let sin = a.interactive && cfg.open_stdin.unwrap_or(false);
    let (up, raw) = c
        .hijack::<()>(
            &format!("/containers/{n}/attach{}", attach_query(sin, true, true, a.detach_keys.as_deref())),
            None,
        )
        .await?;
    let waiter = {
        let c = c.clone();
        let n = n.clone();
        tokio::spawn(async move {
            let r = c.request(Method::POST, &format!("/containers/{n}/wait?condition=next-exit")).await?;
            let v: serde_json::Value = read_json(r).await?;
            Ok::<i64, anyhow::Error>(v.get("StatusCode").and_then(|s| s.as_i64()).unwrap_or(0))
        })
    };
    c.request(Method::POST, &format!("/containers/{n}/start")).await?;
    let _raw_mode = if tty && sin && stream::stdin_is_tty() { Some(RawMode::enable()) } else { None };
    stream::relay(up, raw, sin).await?;
    drop(_raw_mode);
    Ok(waiter.await.ok().and_then(|r| r.ok()).unwrap_or(0).clamp(0, 255) as u8)
}

pub async fn attach(c: &Client, a: AttachArgs) -> anyhow::Result<u8> {
    let info: ContainerInspectResponse = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let state = info.state.clone().unwrap_or_default();
    if state.running != Some(true) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if state.paused == Some(true) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let cfg = info.config.unwrap_or_default();
    let tty = cfg.tty.unwrap_or(false);
    let sin = !a.no_stdin && cfg.open_stdin.unwrap_or(false);
    let (up, raw) = c
        .hijack::<()>(
            &format!("/containers/{}/attach{}", a.container, attach_query(sin, true, true, a.detach_keys.as_deref())),
            None,
        )
        .await?;
    let _raw_mode = if tty && sin && stream::stdin_is_tty() { Some(RawMode::enable()) } else { None };
    if tty {
        resize(c, &format!("/containers/{}/resize", a.container)).await;
    }
    stream::relay(up, raw, sin).await?;
    drop(_raw_mode);
    let info: ContainerInspectResponse = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let st = info.state.unwrap_or_default();
    if st.running == Some(true) {
        return Ok(0);
    }
    Ok(st.exit_code.unwrap_or(0).clamp(0, 255) as u8)
}

pub async fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<u8> {
    let mut env = Vec::new();
    for f in &a.env_file {
        for line in std::fs::read_to_string(f).with_context(|| format!("open {f}"))?.lines() {
            let l = line.trim();
            if !l.is_empty() && !l.starts_with('#') {
                env.push(l.to_string());
            }
        }
    }
    env.extend(a.env.iter().cloned());
    let size = stream::terminal_size().filter(|_| a.tty);
    let cfg = ExecConfig {
        attach_stdin: Some(a.interactive && !a.detach),
        attach_stdout: Some(!a.detach),
        attach_stderr: Some(!a.detach),
        tty: Some(a.tty),
        env: if env.is_empty() { None } else { Some(env) },
        cmd: Some(a.cmd.clone()),
        privileged: Some(a.privileged),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
        detach_keys: a.detach_keys.clone(),
        console_size: size.map(|(h, w)| vec![h as usize, w as usize]),
    };
    let created: serde_json::Value = match c.post_json(&format!("/containers/{}/exec", a.container), &cfg).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            return Ok(1);
        }
    };
    let exec_id = created.get("Id").and_then(|v| v.as_str()).context("the daemon returned no exec ID")?.to_string();
    let start_body = serde_json::json!({
        "Detach": a.detach,
        "Tty": a.tty,
        "ConsoleSize": size.map(|(h, w)| vec![h, w]),
    });
    if a.detach {
        c.request_json(Method::POST, &format!("/exec/{exec_id}/start"), &start_body).await?;
        return Ok(0);
    }
    let (up, raw) = match c.hijack(&format!("/exec/{exec_id}/start"), Some(&start_body)).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            return Ok(super::run_exit_code(&e).max(126));
        }
    };
    let _raw_mode = if a.tty && a.interactive && stream::stdin_is_tty() { Some(RawMode::enable()) } else { None };
    stream::relay(up, raw || a.tty, a.interactive).await?;
    drop(_raw_mode);
    let info: serde_json::Value = c.get_json(&format!("/exec/{exec_id}/json")).await?;
    Ok(info.get("ExitCode").and_then(|v| v.as_i64()).unwrap_or(0).clamp(0, 255) as u8)
}
