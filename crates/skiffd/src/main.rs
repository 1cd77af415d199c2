//! skiffd: the daemon. Opens the engine's state, re-adopts running containers, and serves the
//! Docker Engine API on a unix socket. Flags follow dockerd's names.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

mod analysis_api;
mod blobs_api;
mod daemon_json;
mod executor;
mod networks_api;
mod services_api;
mod swarm_api;
mod swarm_filters;
use skiff_engine::{Engine, EngineConfig};

#[derive(Parser, Debug, Clone)]
#[command(name = "skiffd", version, about = "skiff daemon: the Docker Engine API, built in Rust")]
struct Args {
    /// Socket to listen on (unix:///path; repeatable; default unix:///run/skiff.sock).
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Root of persistent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_root: PathBuf,
    /// Root of runtime state (monitors, bundles).
    #[arg(long, default_value = "/run/skiff")]
    exec_root: PathBuf,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Debug mode: the log level debug, and `docker info` says so.
    #[arg(short = 'D', long)]
    debug: bool,
    /// Accepted as dockerd does; `docker info` reports it (skiff has no experimental features).
    #[arg(long)]
    experimental: bool,
    /// Keep containers running when the daemon stops (`--live-restore=false`: stop them at
    /// shutdown, as dockerd does by default, and stop any found running at start).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    live_restore: bool,
    /// IPC mode of containers that name none: private or shareable.
    #[arg(long, default_value = "private")]
    default_ipc_mode: String,
    /// Cgroup namespace mode of containers that name none: host or private (default: private
    /// on cgroup v2, host on v1).
    #[arg(long)]
    default_cgroupns_mode: Option<String>,
    /// The address `host-gateway` in --add-host stands for (default: the default bridge's).
    #[arg(long)]
    host_gateway_ip: Option<std::net::Ipv4Addr>,
    /// The host address published ports bind to when they name none (default: every address).
    #[arg(long = "ip")]
    ip: Option<std::net::Ipv4Addr>,
    /// Storage driver: overlay2 or vfs (default: overlay2 where it works).
    #[arg(short = 's', long)]
    storage_driver: Option<String>,
    /// Where to write the daemon's pid.
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// The per-container monitor binary (default: skiff-monitor beside skiffd).
    #[arg(long)]
    monitor_path: Option<PathBuf>,
    /// The default bridge's name (created when needed).
    #[arg(short = 'b', long = "bridge", default_value = "skiff0")]
    bridge: String,
    /// The default bridge's address and prefix, e.g. 172.30.0.1/16 (default: a free subnet).
    #[arg(long)]
    bip: Option<String>,
    /// Where new networks' subnets come from: base=CIDR,size=PREFIX (repeatable).
    #[arg(long = "default-address-pool")]
    default_address_pool: Vec<String>,
    /// Inter-container communication on the default bridge.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    icc: bool,
    /// Manage firewall rules (NAT, published ports, isolation).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    iptables: bool,
    /// MTU of the default bridge and its containers' interfaces.
    #[arg(long)]
    mtu: Option<u32>,
    /// DNS server for containers that set none (repeatable; default: the host's).
    #[arg(long)]
    dns: Vec<std::net::IpAddr>,
    /// Also serve skiff's OCI registry on this address (e.g. 127.0.0.1:5000).
    #[arg(long)]
    registry_addr: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9323, dockerd's).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Registry config file (TOML; see `skiff registry serve --help`).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// Registry storage (default: <data-root>/registry).
    #[arg(long)]
    registry_root: Option<PathBuf>,
    /// Registries configuration for pull and push (TOML: mirrors, prefix remaps, insecure).
    #[arg(long, default_value = "/etc/skiff/registries.toml")]
    registries_config: PathBuf,
    /// A registry that may be reached over plain HTTP or unverified TLS (repeatable).
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// A pull-through mirror for docker.io (repeatable).
    #[arg(long = "registry-mirror")]
    registry_mirror: Vec<String>,
    /// Default log driver for containers that name none: json-file or none.
    #[arg(long, default_value = "json-file")]
    log_driver: String,
    /// Default log driver option KEY=VALUE (repeatable), e.g. max-size=10m, max-file=3.
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Refuse images whose layers unpack to more than this (e.g. 20g; binary units): a gzip
    /// bomb or a sparse file of terabytes fails cleanly and leaves nothing behind.
    #[arg(long = "max-unpacked-image-size", value_parser = parse_image_size)]
    max_unpacked_image_size: Option<u64>,
    /// Daemon configuration file (JSON with dockerd's daemon.json keys; a missing default file
    /// is fine).
    #[arg(long, default_value = "/etc/skiff/daemon.json")]
    config_file: PathBuf,
}

/// Applies the configuration file over the flags' defaults (a directive also given as a flag is
/// an error, as with dockerd).
fn apply_config_file(args: &mut Args, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let explicit = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let text = match std::fs::read_to_string(&args.config_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit("config_file") => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.config_file.display())),
    };
    let settings = daemon_json::parse(&text).with_context(|| format!("in {}", args.config_file.display()))?;
    let both: Vec<&str> = settings.iter().filter(|s| explicit(s.id)).map(|s| s.key.as_str()).collect();
    if !both.is_empty() {
        bail!(
            "the following directives are specified both as a flag and in the configuration file ({}): {}",
            args.config_file.display(),
            both.join(", ")
        );
    }
    for s in settings {
        let one = || s.values.first().cloned().unwrap_or_default();
        let bool_of = |v: String| v == "true";
        match s.id {
            "host" => args.host = s.values,
            "debug" => args.debug = bool_of(one()),
            "experimental" => args.experimental = bool_of(one()),
            "live_restore" => args.live_restore = bool_of(one()),
            "default_ipc_mode" => args.default_ipc_mode = one(),
            "default_cgroupns_mode" => args.default_cgroupns_mode = Some(one()),
            "ip" => {
                args.ip = Some(one().parse().with_context(|| format!("{}: {:?} is not an IPv4 address", s.key, one()))?)
            }
            "host_gateway_ip" => {
                args.host_gateway_ip =
                    Some(one().parse().with_context(|| format!("{}: {:?} is not an IPv4 address", s.key, one()))?)
            }
            "data_root" => args.data_root = one().into(),
            "exec_root" => args.exec_root = one().into(),
            "log_level" => args.log_level = one(),
            "storage_driver" => args.storage_driver = Some(one()),
            "pidfile" => args.pidfile = Some(one().into()),
            "bridge" => args.bridge = one(),
            "bip" => args.bip = Some(one()),
            "log_driver" => args.log_driver = one(),
            "monitor_path" => args.monitor_path = Some(one().into()),
            "registry_addr" => {
                args.registry_addr = Some(one().parse().with_context(|| format!("{}: an address:port", s.key))?)
            }
            "metrics_addr" => {
                args.metrics_addr = Some(one().parse().with_context(|| format!("{}: an address:port", s.key))?)
            }
            "registry_config" => args.registry_config = Some(one().into()),
            "registry_root" => args.registry_root = Some(one().into()),
            "registries_config" => args.registries_config = one().into(),
            "mtu" => args.mtu = Some(one().parse().with_context(|| s.key.clone())?),
            "icc" => args.icc = bool_of(one()),
            "iptables" => args.iptables = bool_of(one()),
            "dns" => {
                args.dns = s
                    .values
                    .iter()
                    .map(|d| d.parse().with_context(|| format!("dns: {d:?} is not an IP address")))
                    .collect::<anyhow::Result<_>>()?
            }
            "insecure_registry" => args.insecure_registry = s.values,
            "registry_mirror" => args.registry_mirror = s.values,
            "default_address_pool" => args.default_address_pool = s.values,
            "log_opt" => args.log_opt = s.values,
            "max_unpacked_image_size" => {
                args.max_unpacked_image_size =
                    Some(parse_image_size(&one()).map_err(|e| anyhow::anyhow!("{}: {e}", s.key))?)
            }
            other => bail!("internal: no flag {other}"),
        }
    }
    Ok(())
}

fn parse_image_size(s: &str) -> Result<u64, String> {
    skiff_common::units::ram_in_bytes(s).filter(|n| *n > 0).ok_or_else(|| format!("invalid size {s:?} (e.g. 20g)"))
}

/// The daemon's default log configuration, checked as a container's would be.
fn default_log(args: &Args) -> anyhow::Result<bollard_stubs::models::HostConfigLogConfig> {
    if !matches!(args.log_driver.as_str(), "json-file" | "local" | "none") {
        bail!("--log-driver: no log driver named '{}' is registered (json-file, local, none)", args.log_driver);
    }
    let mut opts = std::collections::HashMap::new();
    for o in &args.log_opt {
        let (k, v) = o.split_once('=').with_context(|| format!("--log-opt {o:?}: KEY=VALUE expected"))?;
        opts.insert(k.to_string(), v.to_string());
    }
    let lc = bollard_stubs::models::HostConfigLogConfig { typ: Some(args.log_driver.clone()), config: Some(opts) };
    let hc = bollard_stubs::models::HostConfig { log_config: Some(lc.clone()), ..Default::default() };
    skiff_engine::container::logopts::log_rotation(&hc).map_err(|e| anyhow::anyhow!("--log-opt: {}", e.message))?;
    Ok(lc)
}

fn parse_pool(s: &str) -> anyhow::Result<(skiff_net::ipam::Ipv4Net, u8)> {
    let mut base = None;
    let mut size = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("base", v)) => {
                base = Some(v.parse::<skiff_net::ipam::Ipv4Net>().map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            Some(("size", v)) => size = Some(v.parse::<u8>().context("invalid pool size")?),
            _ => bail!("invalid --default-address-pool {s:?} (want base=CIDR,size=N)"),
        }
    }
    let base = base.context("--default-address-pool needs base=CIDR")?.trunc();
    let size = size.context("--default-address-pool needs size=N")?;
    if size < base.prefix() || size > 30 {
        bail!("invalid --default-address-pool {s:?}: size must be between the base's prefix and 30");
    }
    Ok((base, size))
}

/// What the flags and the configuration file resolve to; a SIGHUP resolves them again.
struct Loaded {
    args: Args,
    default_log: bollard_stubs::models::HostConfigLogConfig,
    registries: skiff_distribution::RegistriesConfig,
    level: String,
}

fn load(matches: &clap::ArgMatches) -> anyhow::Result<Loaded> {
    let mut args = Args::from_arg_matches(matches)?;
    apply_config_file(&mut args, matches)?;
    if args.host.is_empty() {
        args.host.push("unix:///run/skiff.sock".into());
    }
    if args.debug {
        args.log_level = "debug".into();
    }
    let default_log = default_log(&args)?;
    let level = match args.log_level.as_str() {
        "debug" | "info" | "warn" | "error" | "trace" => args.log_level.clone(),
        "fatal" | "panic" => "error".into(),
        other => bail!("invalid log level {other:?}"),
    };
    let registries = registries(&args)?;
    Ok(Loaded { args, default_log, registries, level })
}

/// The settings a reload cannot change (they shape state the daemon has already set up).
fn fixed(a: &Args) -> String {
    format!(
        "{:?}",
        (
            (&a.host, &a.data_root, &a.exec_root, &a.storage_driver, &a.pidfile, &a.monitor_path),
            (a.live_restore, &a.default_ipc_mode, &a.default_cgroupns_mode, &a.host_gateway_ip, a.experimental, a.ip),
            (&a.bridge, &a.bip, &a.default_address_pool, a.icc, a.iptables, a.mtu, &a.dns),
            (&a.registry_addr, &a.registry_config, &a.registry_root, a.max_unpacked_image_size, a.metrics_addr),
        )
    )
}

fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    // openraft's metrics waits log every wake-up at debug (tens of MB an hour on a manager).
    tracing_subscriber::EnvFilter::new(format!(
        "{level},hyper=warn,h2=warn,hickory_server=warn,hickory_proto=warn,hickory_net=warn,openraft::metrics=info"
    ))
}

/// `registries.toml` plus `--insecure-registry` and `--registry-mirror`.
fn registries(args: &Args) -> anyhow::Result<skiff_distribution::RegistriesConfig> {
    let mut registries = if args.registries_config.exists() {
        skiff_distribution::RegistriesConfig::from_file(&args.registries_config).map_err(|e| anyhow::anyhow!(e))?
    } else {
        Default::default()
    };
    for i in &args.insecure_registry {
        let host = i.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
        registries.insecure.push(host.to_string());
    }
    if !args.registry_mirror.is_empty() {
        let idx = match registries.registries.iter().position(|r| r.prefix == "docker.io") {
            Some(i) => i,
            None => {
                registries.registries.push(skiff_distribution::config::RegistryEntry {
                    prefix: "docker.io".into(),
                    ..Default::default()
                });
                registries.registries.len() - 1
            }
        };
        for m in &args.registry_mirror {
            let insecure = m.starts_with("http://");
            let loc = m.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
            registries.registries[idx]
                .mirrors
                .push(skiff_distribution::config::Mirror { location: loc.to_string(), insecure });
        }
    }
    Ok(registries)
}

/// The engine's configuration from the flags: the monitor binaries (beside skiffd unless
/// --monitor-path), the default bridge and its network settings, the containers' defaults.
fn engine_config(
    args: &Args,
    default_log: bollard_stubs::models::HostConfigLogConfig,
    registries: skiff_distribution::RegistriesConfig,
) -> anyhow::Result<EngineConfig> {
    let monitor_bin = match args.monitor_path.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.parent().context("skiffd has no directory")?.join("skiff-monitor"),
    };
    if !monitor_bin.exists() {
        bail!("monitor binary {} not found", monitor_bin.display());
    }
    let helper = monitor_bin.with_file_name("skiff-create");
    if !helper.exists() {
        bail!("the monitor's helper {} not found (it must be beside skiff-monitor)", helper.display());
    }
    if args.bridge.is_empty() || args.bridge.len() > 15 || args.bridge.contains('/') {
        bail!("invalid bridge name {:?}", args.bridge);
    }
    let mut net = skiff_engine::network::NetConfig {
        default_bridge: args.bridge.clone(),
        icc: args.icc,
        iptables: args.iptables,
        mtu: args.mtu,
        dns: args.dns.clone(),
        host_gateway_ip: args.host_gateway_ip,
        default_bind_ip: args.ip,
        ..Default::default()
    };
    if let Some(b) = &args.bip {
        net.bip = Some(b.parse().map_err(|e| anyhow::anyhow!("--bip: {e}"))?);
    }
    if !args.default_address_pool.is_empty() {
        net.pools = args.default_address_pool.iter().map(|p| parse_pool(p)).collect::<anyhow::Result<_>>()?;
    }
    Ok(EngineConfig {
        registries,
        data_root: args.data_root.clone(),
        exec_root: args.exec_root.clone(),
        monitor_bin,
        storage_driver: args.storage_driver.clone(),
        net,
        default_log,
        max_image_size: args.max_unpacked_image_size,
        container_defaults: skiff_engine::container::Defaults {
            ipc_mode: args.default_ipc_mode.clone(),
            cgroupns_mode: args.default_cgroupns_mode.clone().unwrap_or_default(),
            live_restore: args.live_restore,
        },
        debug: args.debug,
        experimental: args.experimental,
    })
}

/// The embedded registry's configuration, when --registry-addr or --registry-config asks for one.
fn registry_config(args: &Args) -> anyhow::Result<Option<skiff_registry::Config>> {
    Ok(if args.registry_addr.is_some() || args.registry_config.is_some() {
        let mut c = match &args.registry_config {
            Some(p) => skiff_registry::Config::from_file(p).map_err(|e| anyhow::anyhow!(e))?,
            None => skiff_registry::Config { root: args.data_root.join("registry"), ..Default::default() },
        };
        if let Some(a) = args.registry_addr {
            c.addr = a;
        }
        if let Some(r) = &args.registry_root {
            c.root = r.clone();
        }
        c.finish();
        Some(c)
    } else {
        None
    })
}

/// Binds the API's unix sockets (0660); a stale socket file is replaced, a live daemon's is an
/// error.
async fn bind(sockets: &[PathBuf]) -> anyhow::Result<Vec<tokio::net::UnixListener>> {
    let mut listeners = Vec::new();
    for socket in sockets {
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if socket.exists() {
            // A live daemon on this socket is an error; a stale socket file is not.
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                bail!("another daemon is listening on {}", socket.display());
            }
            std::fs::remove_file(socket)?;
        }
        let listener =
            tokio::net::UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// How this node describes itself to a swarm: the engine's own view of the host.
fn describe(engine: Arc<Engine>) -> skiff_swarm::Describe {
    Arc::new(move || {
        let i = engine.info();
        skiff_cluster::types::NodeDescription {
            hostname: i.name.unwrap_or_default(),
            os: "linux".into(),
            architecture: i.architecture.unwrap_or_default(),
            engine_version: i.server_version.unwrap_or_default(),
            nano_cpus: i.ncpu.unwrap_or(1) * 1_000_000_000,
            memory_bytes: i.mem_total.unwrap_or(0),
            engine_labels: Default::default(),
        }
    })
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let matches = Args::command().get_matches();
    let Loaded { args, default_log, registries, level } = load(&matches)?;
    let started_with = fixed(&args);
    let (filter, filter_handle) = tracing_subscriber::reload::Layer::new(log_filter(&level));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let sockets = args
        .host
        .iter()
        .map(|h| match h.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None if h.starts_with('/') => Ok(PathBuf::from(h)),
            None => bail!("only unix sockets are supported (-H unix:///path), got {h:?}"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = registry_config(&args)?;
    let config = engine_config(&args, default_log, registries)?;
    let engine = Arc::new(Engine::open(config).context("opening the engine")?);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listeners = bind(&sockets).await?;
        if let Some(p) = &args.pidfile {
            std::fs::write(p, std::process::id().to_string())?;
        }
        let _registry = match &registry {
            Some(c) => Some(skiff_registry::bind_and_serve(c).await.map_err(|e| anyhow::anyhow!(e))?.1),
            None => None,
        };
        engine.restore().await;
        // The daemon's own background tasks (the metrics server, the SIGHUP reloader): owned
        // here, stopped once the API has stopped serving.
        let background = tokio_util::task::TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        if let Some(addr) = args.metrics_addr {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics-addr {addr}"))?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            let (engine, stop) = (engine.clone(), stop.clone());
            background.spawn(async move {
                if let Err(e) = skiff_analysis::metrics::serve(l, engine, stop.cancelled_owned()).await {
                    tracing::error!("metrics server: {e}");
                }
            });
        }
        // SIGHUP: read the flags and the configuration file again and apply what can change
        // while running (registries and mirrors, default log options, the log level).
        {
            let (engine, matches) = (engine.clone(), matches.clone());
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            background.spawn(stop.clone().run_until_cancelled_owned(async move {
                while hup.recv().await.is_some() {
                    match load(&matches) {
                        Ok(new) => {
                            if fixed(&new.args) != started_with {
                                tracing::warn!(
                                    "configuration changes other than registries, log options and the log level take effect at restart"
                                );
                            }
                            engine.reload(new.registries, new.default_log);
                            let _ = filter_handle.reload(log_filter(&new.level));
                            tracing::info!("configuration reloaded");
                        }
                        Err(e) => tracing::error!("configuration not reloaded: {e:#}"),
                    }
                }
            }));
        }
        for socket in &sockets {
            tracing::info!(socket = %socket.display(), "skiffd is serving the Docker Engine API");
        }
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            let mut int =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("signal handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let executor: Arc<dyn skiff_agent::Executor> = Arc::new(executor::EngineExecutor { engine: engine.clone() });
        let swarm =
            skiff_swarm::Swarm::open(&args.data_root.join("swarm"), describe(engine.clone()), Some(executor)).await;
        let api = Arc::new(swarm_api::SwarmApi { swarm: swarm.clone() });
        let analysis = Arc::new(analysis_api::AnalysisApi { engine: engine.clone() });
        skiff_api::serve(listeners, engine.clone(), (api, analysis), shutdown).await;
        stop.cancel();
        background.close();
        background.wait().await;
        swarm.shutdown().await;
        if args.live_restore {
            tracing::info!("shutting down; running containers keep running");
        } else {
            tracing::info!("shutting down; stopping running containers (live restore is off)");
        }
        engine.shutdown().await;
        for socket in &sockets {
            let _ = std::fs::remove_file(socket);
        }
        if let Some(p) = &args.pidfile {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    })
}
