//! `skiff registry serve|gc`: the built-in OCI registry, standalone. Runs in this process (no
//! daemon needed).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use skiff_registry::Config;

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Serve an OCI distribution-spec registry
    Serve(ServeArgs),
    /// Remove blobs no manifest references
    Gc(GcArgs),
    /// Add or replace a user in an htpasswd file (bcrypt; password from stdin)
    Htpasswd(HtpasswdArgs),
}

#[derive(Args, Debug)]
pub struct HtpasswdArgs {
    /// The htpasswd file (created if missing)
    file: PathBuf,
    user: String,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Config file (TOML); flags override it
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Storage root
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on
    #[arg(long)]
    addr: Option<std::net::SocketAddr>,
    /// TLS certificate (PEM)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// htpasswd file (bcrypt) for basic auth
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Use Docker's bearer token flow (tokens issued by this registry at /token)
    #[arg(long, requires = "htpasswd")]
    token_auth: bool,
    /// Refuse DELETE of manifests, tags and blobs
    #[arg(long)]
    no_delete: bool,
    /// Without --htpasswd: let anyone push and delete (by default pushes and deletes need the
    /// registry's generated login, user `skiff`, password in <root>/auth/password)
    #[arg(long, conflicts_with = "htpasswd")]
    anonymous_push: bool,
    /// Log level
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Keep unreferenced blobs younger than this many seconds (uploads in flight)
    #[arg(long, default_value_t = 3600)]
    grace: u64,
    /// Only report what would be removed
    #[arg(long, short = 'n')]
    dry_run: bool,
}

fn base_config(c: &CommonArgs) -> anyhow::Result<Config> {
    let mut cfg = match &c.config {
        Some(p) => Config::from_file(p).map_err(|e| anyhow!(e))?,
        None => Config::default(),
    };
    if let Some(r) = &c.root {
        cfg.root = r.clone();
    }
    Ok(cfg)
}

pub fn run(cmd: RegistryCmd) -> anyhow::Result<u8> {
    match cmd {
        RegistryCmd::Serve(a) => serve(a),
        RegistryCmd::Gc(a) => gc(a),
        RegistryCmd::Htpasswd(a) => htpasswd(a),
    }
}

fn htpasswd(a: HtpasswdArgs) -> anyhow::Result<u8> {
    if a.user.is_empty() || a.user.contains(':') || a.user.contains('\n') {
        anyhow::bail!("invalid user name {:?}", a.user);
    }
    let mut pass = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut pass)?;
    let pass = pass.trim_end_matches(['\n', '\r']);
    if pass.is_empty() {
        anyhow::bail!("empty password (give it on stdin)");
    }
    let hash = skiff_registry::auth::hash_password(pass).map_err(|e| anyhow!(e))?;
    let old = std::fs::read_to_string(&a.file).unwrap_or_default();
    let mut lines: Vec<String> =
        old.lines().filter(|l| l.split(':').next() != Some(a.user.as_str())).map(str::to_string).collect();
    lines.push(format!("{}:{hash}", a.user));
    let text = lines.join("\n") + "\n";
    skiff_common::fsutil::atomic_write(&a.file, text.as_bytes())
        .with_context(|| format!("writing {}", a.file.display()))?;
    Ok(0)
}

fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let mut cfg = base_config(&a.common)?;
    if let Some(x) = a.addr {
        cfg.addr = x;
    }
    if a.tls_cert.is_some() {
        cfg.tls_cert = a.tls_cert;
        cfg.tls_key = a.tls_key;
    }
    if a.no_delete {
        cfg.delete = false;
    }
    if a.anonymous_push {
        cfg.anonymous_push = true;
    }
    if let Some(h) = a.htpasswd {
        let auth = cfg.auth.get_or_insert_with(|| skiff_registry::auth::AuthConfig {
            service: "skiff-registry".into(),
            ..Default::default()
        });
        auth.htpasswd = Some(h);
        if a.token_auth && auth.token_realm.is_none() {
            auth.token_realm = Some(String::new());
        }
    }
    cfg.finish();
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{},hyper=warn", a.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (addr, task) = skiff_registry::bind_and_serve(&cfg).await.map_err(|e| anyhow!(e))?;
        eprintln!("skiff registry listening on {addr} (root {})", cfg.root.display());
        tokio::select! {
            _ = task => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => { s.recv().await; }
                    Err(_) => std::future::pending::<()>().await,
                }
            } => {}
        }
        Ok::<_, anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(0)
}

fn gc(a: GcArgs) -> anyhow::Result<u8> {
    let cfg = base_config(&a.common)?;
    let st = skiff_registry::storage::Storage::open(&cfg.root)
        .with_context(|| format!("opening registry storage {}", cfg.root.display()))?;
    let r = skiff_registry::gc::collect(&st, Duration::from_secs(a.grace), a.dry_run)?;
    for d in &r.removed {
        println!("{}{d}", if a.dry_run { "would remove " } else { "removed " });
    }
    println!(
        "{} blobs referenced; {} unreferenced blobs {} ({} bytes); {} stale uploads",
        r.marked,
        r.removed.len(),
        if a.dry_run { "would be removed" } else { "removed" },
        r.freed_bytes,
        r.stale_uploads
    );
    Ok(0)
}
