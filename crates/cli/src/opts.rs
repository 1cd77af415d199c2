//! `run`/`create` flags (docker's names) and their translation into a create request.

use std::collections::HashMap;

use anyhow::{Context, bail};
use bollard_stubs::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTmpfsOptions, MountTypeEnum, MountVolumeOptions, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct RunOpts {
    /// Run in the background and print the container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
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
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Ulimit options
    #[arg(long = "ulimit")]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Set custom DNS servers
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long = "expose")]
    pub expose: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add link to another container
    #[arg(long = "link")]
    pub link: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl")]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Write the container ID to the file
    #[arg(long = "cidfile")]
    pub cidfile: Option<String>,
}

/// `64m`, `1g`, `512k`, `1024` → bytes (binary multipliers, as docker's RAMInBytes).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    skiff_common::units::ram_in_bytes(s)
        .and_then(|n| i64::try_from(n).ok())
        .with_context(|| format!("invalid size: '{s}'"))
}

/// Go durations (`30s`, `1m30s`, `500ms`) → nanoseconds.
pub fn parse_duration_ns(s: &str) -> anyhow::Result<i64> {
    Ok(skiff_common::units::parse_go_duration(s)?)
}

fn parse_env_file(path: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("open {path}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.contains('=') {
            out.push(l.to_string());
        } else if let Ok(v) = std::env::var(l.trim()) {
            out.push(format!("{}={v}", l.trim()));
        }
    }
    Ok(out)
}

fn expand_env(e: &str) -> String {
    // `-e NAME` takes NAME from the client's environment, as docker does.
    if e.contains('=') {
        e.to_string()
    } else {
        match std::env::var(e) {
            Ok(v) => format!("{e}={v}"),
            Err(_) => e.to_string(),
        }
    }
}

fn parse_mount(spec: &str) -> anyhow::Result<Mount> {
    let mut m = Mount::default();
    let mut typ = "volume".to_string();
    let mut bind_prop = None;
    let mut nocopy = None;
    let mut tmpfs = MountTmpfsOptions::default();
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (field.trim().to_ascii_lowercase(), String::new()),
        };
        match k.as_str() {
            "type" => typ = v,
            "source" | "src" => m.source = Some(v),
            "target" | "destination" | "dst" => m.target = Some(v),
            "readonly" | "ro" => m.read_only = Some(v.is_empty() || v == "true" || v == "1"),
            "bind-propagation" => bind_prop = Some(v),
            "volume-nocopy" => nocopy = Some(v.is_empty() || v == "true"),
            "tmpfs-size" => tmpfs.size_bytes = Some(parse_size(&v)?),
            "tmpfs-mode" => {
                tmpfs.mode = Some(i64::from_str_radix(&v, 8).with_context(|| format!("invalid tmpfs-mode {v}"))?)
            }
            "consistency" => {}
            _ => bail!("invalid field '{k}' must be a key=value pair"),
        }
    }
    m.typ = Some(match typ.as_str() {
        "bind" => MountTypeEnum::BIND,
        "volume" => MountTypeEnum::VOLUME,
        "tmpfs" => MountTypeEnum::TMPFS,
        other => bail!("invalid mount type {other:?}"),
    });
    if let Some(p) = bind_prop {
        m.bind_options = Some(MountBindOptions {
            propagation: Some(p.parse::<MountBindOptionsPropagationEnum>().map_err(|e| anyhow::anyhow!(e))?),
            ..Default::default()
        });
    }
    if let Some(n) = nocopy {
        m.volume_options = Some(MountVolumeOptions { no_copy: Some(n), ..Default::default() });
    }
    if tmpfs.size_bytes.is_some() || tmpfs.mode.is_some() {
        m.tmpfs_options = Some(tmpfs);
    }
    Ok(m)
}

fn restart_policy(s: &str) -> anyhow::Result<RestartPolicy> {
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (n, Some(m.parse::<i64>().with_context(|| format!("invalid restart policy format: {s}"))?)),
        None => (s, None),
    };
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => bail!("invalid restart policy '{other}'"),
    };
    if max.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        bail!("maximum retry count can only be used with 'on-failure'");
    }
    Ok(RestartPolicy { name: Some(name), maximum_retry_count: max })
}

fn ulimit(s: &str) -> anyhow::Result<ResourcesUlimits> {
    let (name, vals) = s.split_once('=').with_context(|| format!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a.parse::<i64>()?, b.parse::<i64>()?),
        None => {
            let v = vals.parse::<i64>().with_context(|| format!("invalid ulimit argument: {s}"))?;
            (v, v)
        }
    };
    Ok(ResourcesUlimits { name: Some(name.to_string()), soft: Some(soft), hard: Some(hard) })
}

/// The body of `POST /containers/create` from `run`/`create`'s flags, image and command.
pub fn build_create(
    o: &RunOpts,
    image: &str,
    cmd: &[String],
    terminal_size: Option<(u16, u16)>,
) -> anyhow::Result<ContainerCreateBody> {
    let mut env: Vec<String> = Vec::new();
    for f in &o.env_file {
        env.extend(parse_env_file(f)?);
    }
    env.extend(o.env.iter().map(|e| expand_env(e)));
    let mut labels = HashMap::new();
    for l in &o.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let (attach_stdin, attach_stdout, attach_stderr) = attach_streams(o);
    let healthcheck = healthcheck(o)?;
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    for e in &o.expose {
        let p = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
        exposed.insert(p, HashMap::new());
    }
    let mut tmpfs = HashMap::new();
    for t in &o.tmpfs {
        let (d, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        tmpfs.insert(d.to_string(), opts.to_string());
    }
    let mut sysctls = HashMap::new();
    for s in &o.sysctl {
        let (k, v) = s.split_once('=').with_context(|| format!("sysctl '{s}' is not allowed"))?;
        sysctls.insert(k.to_string(), v.to_string());
    }
    let memory = o.memory.as_deref().map(parse_size).transpose()?;
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(parse_size(s)?),
        None => None,
    };
    let log_config = log_config(o)?;
    let mut port_bindings: HashMap<String, Option<Vec<bollard_stubs::models::PortBinding>>> = HashMap::new();
    for p in &o.publish {
        for (key, binding) in parse_publish(p)? {
            exposed.insert(key.clone(), HashMap::new());
            port_bindings.entry(key).or_insert_with(|| Some(vec![])).get_or_insert_with(Vec::new).push(binding);
        }
    }
    let entrypoint = o.entrypoint.as_ref().map(|e| if e.is_empty() { vec![String::new()] } else { vec![e.clone()] });
    let host_config = HostConfig {
        binds: if o.volume.is_empty() { None } else { Some(o.volume.clone()) },
        mounts: if o.mount.is_empty() {
            None
        } else {
            Some(o.mount.iter().map(|m| parse_mount(m)).collect::<anyhow::Result<_>>()?)
        },
        tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
        readonly_rootfs: Some(o.read_only),
        memory,
        memory_swap,
        memory_reservation: o.memory_reservation.as_deref().map(parse_size).transpose()?,
        nano_cpus: o.cpus.map(|c| (c * 1e9) as i64),
        cpu_shares: o.cpu_shares,
        cpuset_cpus: o.cpuset_cpus.clone(),
        pids_limit: o.pids_limit,
        ulimits: if o.ulimit.is_empty() {
            None
        } else {
            Some(o.ulimit.iter().map(|u| ulimit(u)).collect::<anyhow::Result<_>>()?)
        },
        cap_add: if o.cap_add.is_empty() { None } else { Some(o.cap_add.clone()) },
        cap_drop: if o.cap_drop.is_empty() { None } else { Some(o.cap_drop.clone()) },
        privileged: Some(o.privileged),
        security_opt: if o.security_opt.is_empty() {
            None
        } else {
            Some(o.security_opt.iter().map(|x| security_opt(x)).collect::<anyhow::Result<_>>()?)
        },
        init: if o.init { Some(true) } else { None },
        restart_policy: Some(restart_policy(&o.restart)?),
        auto_remove: Some(o.rm),
        network_mode: Some(o.network.clone().unwrap_or_else(|| "default".into())),
        dns: if o.dns.is_empty() { None } else { Some(o.dns.clone()) },
        dns_options: if o.dns_option.is_empty() { None } else { Some(o.dns_option.clone()) },
        dns_search: if o.dns_search.is_empty() { None } else { Some(o.dns_search.clone()) },
        extra_hosts: if o.add_host.is_empty() { None } else { Some(o.add_host.clone()) },
        port_bindings: if port_bindings.is_empty() { None } else { Some(port_bindings) },
        publish_all_ports: Some(o.publish_all),
        links: if o.link.is_empty() { None } else { Some(o.link.clone()) },
        log_config,
        group_add: if o.group_add.is_empty() { None } else { Some(o.group_add.clone()) },
        sysctls: if sysctls.is_empty() { None } else { Some(sysctls) },
        shm_size: o.shm_size.as_deref().map(parse_size).transpose()?,
        console_size: terminal_size.filter(|_| o.tty).map(|(h, w)| vec![h as usize, w as usize]),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        hostname: o.hostname.clone(),
        user: o.user.clone(),
        attach_stdin: Some(attach_stdin),
        attach_stdout: Some(attach_stdout),
        attach_stderr: Some(attach_stderr),
        exposed_ports: if exposed.is_empty() { None } else { Some(exposed) },
        tty: Some(o.tty),
        open_stdin: Some(o.interactive),
        stdin_once: Some(o.interactive && !o.detach),
        env: if env.is_empty() { None } else { Some(env) },
        cmd: if cmd.is_empty() { None } else { Some(cmd.to_vec()) },
        healthcheck,
        image: Some(image.to_string()),
        working_dir: o.workdir.clone(),
        entrypoint,
        labels: if labels.is_empty() { None } else { Some(labels) },
        stop_signal: o.stop_signal.clone(),
        stop_timeout: o.stop_timeout,
        host_config: Some(host_config),
        networking_config: networking_config(o),
        ..Default::default()
    })
}

/// Which streams `run` attaches: none detached, `-a` as given, else stdout and stderr (and stdin
/// with `-i`).
fn attach_streams(o: &RunOpts) -> (bool, bool, bool) {
    let attach: Vec<String> = o.attach.iter().map(|a| a.to_ascii_lowercase()).collect();
    if o.detach {
        (false, false, false)
    } else if attach.is_empty() {
        (o.interactive, true, true)
    } else {
        (
            attach.contains(&"stdin".to_string()),
            attach.contains(&"stdout".to_string()),
            attach.contains(&"stderr".to_string()),
        )
    }
}

/// `--health-*` and `--no-healthcheck`.
fn healthcheck(o: &RunOpts) -> anyhow::Result<Option<HealthConfig>> {
    Ok(if o.no_healthcheck {
        Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() })
    } else if o.health_cmd.is_some()
        || o.health_interval.is_some()
        || o.health_retries.is_some()
        || o.health_timeout.is_some()
    {
        Some(HealthConfig {
            test: o.health_cmd.as_ref().map(|c| vec!["CMD-SHELL".into(), c.clone()]),
            interval: o.health_interval.as_deref().map(parse_duration_ns).transpose()?,
            timeout: o.health_timeout.as_deref().map(parse_duration_ns).transpose()?,
            retries: o.health_retries,
            start_period: o.health_start_period.as_deref().map(parse_duration_ns).transpose()?,
            start_interval: o.health_start_interval.as_deref().map(parse_duration_ns).transpose()?,
        })
    } else {
        None
    })
}

/// `--log-driver` and `--log-opt`.
fn log_config(o: &RunOpts) -> anyhow::Result<Option<HostConfigLogConfig>> {
    if o.log_driver.is_none() && o.log_opt.is_empty() {
        return Ok(None);
    }
    let mut cfg = HashMap::new();
    for lo in &o.log_opt {
        let (k, v) = lo.split_once('=').with_context(|| format!("invalid log opt {lo}"))?;
        cfg.insert(k.to_string(), v.to_string());
    }
    Ok(Some(HostConfigLogConfig { typ: o.log_driver.clone(), config: Some(cfg) }))
}

/// `--ip`, `--network-alias`, `--mac-address` as the endpoint of the `--network`.
fn networking_config(o: &RunOpts) -> Option<bollard_stubs::models::NetworkingConfig> {
    if o.ip.is_none() && o.network_alias.is_empty() && o.mac_address.is_none() {
        return None;
    }
    let ep = bollard_stubs::models::EndpointSettings {
        ipam_config: o.ip.as_ref().map(|ip| bollard_stubs::models::EndpointIpamConfig {
            ipv4_address: Some(ip.clone()),
            ..Default::default()
        }),
        aliases: if o.network_alias.is_empty() { None } else { Some(o.network_alias.clone()) },
        mac_address: o.mac_address.clone(),
        ..Default::default()
    };
    let name = o.network.clone().unwrap_or_else(|| "default".into());
    Some(bollard_stubs::models::NetworkingConfig { endpoints_config: Some(HashMap::from([(name, ep)])) })
}

/// One `-p [ip:][hostPort:]containerPort[/proto]` (ranges allowed on both sides) as
/// `PortBindings` entries, one per container port, as the docker CLI sends them.
pub fn parse_publish(spec: &str) -> anyhow::Result<Vec<(String, bollard_stubs::models::PortBinding)>> {
    let (body, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    // An IPv6 host address comes in brackets: [::1]:8080:80.
    let (ip, rest) = match body.strip_prefix('[') {
        Some(b) => {
            let (ip, rest) = b.split_once("]:").with_context(|| format!("invalid publish spec {spec}"))?;
            (ip.to_string(), rest.to_string())
        }
        None => {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.as_slice() {
                [c] => (String::new(), c.to_string()),
                [h, c] => (String::new(), format!("{h}:{c}")),
                [ip, h, c] => (ip.to_string(), format!("{h}:{c}")),
                _ => bail!("invalid publish spec {spec}"),
            }
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h.to_string(), c.to_string()),
        None => (String::new(), rest),
    };
    let range = |s: &str| -> anyhow::Result<(u16, u16)> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b): (u16, u16) = (
            a.parse().with_context(|| format!("invalid port {s:?} in {spec}"))?,
            b.parse().with_context(|| format!("invalid port {s:?} in {spec}"))?,
        );
        if a == 0 || b < a {
            bail!("invalid port range {s:?} in {spec}");
        }
        Ok((a, b))
    };
    let (clo, chi) = range(&container)?;
    let hrange = if host.is_empty() { None } else { Some(range(&host)?) };
    if let Some((hlo, hhi)) = hrange
        && chi > clo
        && hhi - hlo != chi - clo
    {
        bail!("invalid ranges specified for container and host Ports: {container} and {host}");
    }
    let mut out = Vec::new();
    for (i, cp) in (clo..=chi).enumerate() {
        let hp = match hrange {
            None => String::new(),
            Some((hlo, _)) if chi > clo => (hlo + i as u16).to_string(),
            Some((hlo, hhi)) if hlo == hhi => hlo.to_string(),
            Some((hlo, hhi)) => format!("{hlo}-{hhi}"),
        };
        out.push((
            format!("{cp}/{proto}"),
            bollard_stubs::models::PortBinding { host_ip: Some(ip.clone()), host_port: Some(hp) },
        ));
    }
    Ok(out)
}

/// As the docker CLI: `seccomp=PATH` sends the profile's contents (the daemon never reads the
/// client's files); `seccomp=unconfined`/`builtin` and other options go as they are.
fn security_opt(o: &str) -> anyhow::Result<String> {
    let Some(v) = o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")) else {
        return Ok(o.to_string());
    };
    if v == "unconfined" || v == "builtin" {
        return Ok(o.to_string());
    }
    let text = std::fs::read_to_string(v).with_context(|| format!("opening seccomp profile ({v}) failed"))?;
    let compact: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("decoding seccomp profile ({v}) failed"))?;
    Ok(format!("seccomp={compact}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "80/tcp");
        assert_eq!(p[0].1.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].1.host_port.as_deref(), Some("8080"));
        let p = parse_publish("8000-8001:80-81/udp").unwrap();
        assert_eq!(
            p.iter().map(|x| (x.0.as_str(), x.1.host_port.clone().unwrap())).collect::<Vec<_>>(),
            vec![("80/udp", "8000".to_string()), ("81/udp", "8001".to_string())]
        );
        assert_eq!(parse_publish("80").unwrap()[0].1.host_port.as_deref(), Some(""));
        assert_eq!(parse_publish("9000-9010:80").unwrap()[0].1.host_port.as_deref(), Some("9000-9010"));
        assert_eq!(parse_publish("[::1]:80:80").unwrap()[0].1.host_ip.as_deref(), Some("::1"));
        for bad in ["80/icmp", "a:b:c:d", "0", "x", "8000-8002:80-81", "90-80"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12x").is_err());
        assert_eq!(parse_duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert!(parse_duration_ns("30").is_err());
    }

    #[test]
    fn policies_and_mounts() {
        assert_eq!(restart_policy("on-failure:3").unwrap().maximum_retry_count, Some(3));
        assert!(restart_policy("always:3").is_err());
        assert!(restart_policy("sometimes").is_err());
        let m = parse_mount("type=bind,source=/a,target=/b,readonly").unwrap();
        assert_eq!(m.typ, Some(MountTypeEnum::BIND));
        assert_eq!(m.read_only, Some(true));
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert_eq!(ulimit("nofile=1024:2048").unwrap().hard, Some(2048));
    }
}
